"""Live-image updates per second in a real headless Chromium during a series, and what it costs the acquisition.

    .venv/bin/python bench/webui_live.py [--detector eiger2-4m] [--frame-time 0.01] [--nimages 1000] [--scene JSON]

Starts `dcu serve`, enables the Monitor, opens the Web-UI's Live image page in Debian's chromium (chromium +
chromium-driver), arms and triggers one series and counts the distinct images the page drew while it ran;
then the packets lost. Also the server-side time of one GET /ui/api/monitor/view (fitted view, 2 x 2 binning
for a 4M) against decoding the same monitor TIFF alone. Measured, never asserted.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
from common import ResultTable, median, time_call

V = "1.8.0"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(tmp: Path, detector: str, scene: str = "") -> tuple[subprocess.Popen, str]:
    port = free_port()
    cmd = [
        sys.executable,
        "-m",
        "opendcu",
        "serve",
        "--detector",
        detector,
        "--port",
        str(port),
        "--data-dir",
        str(tmp / "data"),
        "--stream-v1-port",
        str(free_port()),
        "--stream-v2-port",
        str(free_port()),
        *(["--scene", scene] if scene else []),
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=tmp)
    ready = threading.Event()

    def pump() -> None:
        for line in proc.stdout:
            if line.startswith("opendcu ready"):
                ready.set()

    threading.Thread(target=pump, daemon=True).start()
    if not ready.wait(900):
        proc.kill()
        sys.exit("dcu serve did not start")
    return proc, f"http://127.0.0.1:{port}"


CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_by_thread() -> dict[str, float]:
    """CPU seconds of every thread on the machine, by "command/thread name" (app-detector names its threads;
    chromium's processes count under chromium)."""
    out: dict[str, float] = {}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            command = (proc / "comm").read_text().strip()
            argv = (proc / "cmdline").read_bytes().split(b"\0")
            if b"-m" in argv[:-1]:  # python -m <module>: the app's name
                command = argv[argv.index(b"-m") + 1].decode().removeprefix("opendcu.")
            for task in (proc / "task").iterdir():
                fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
                name = (task / "comm").read_text().strip()
                key = f"{command}/{name}" if name != command else command
                out[key] = out.get(key, 0.0) + (int(fields[11]) + int(fields[12])) / CLK_TCK
        except (OSError, IndexError, ValueError):
            continue
    return out


def busiest(before: dict[str, float], after: dict[str, float], n: int = 14) -> str:
    spent = {k: after[k] - before.get(k, 0.0) for k in after}
    top = sorted(spent.items(), key=lambda kv: -kv[1])[:n]
    return ", ".join(f"{k} {v:.1f} s" for k, v in top if v >= 0.05)


def renice_browser(niceness: int) -> None:
    """Give the headless browser's processes `niceness`: on a beamline the browser runs on another machine, so
    this measures what serving the live view costs the DCU, not what drawing it costs a shared 2-core box."""
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and (proc / "comm").read_text().strip() in ("chromium", "chromedriver", "chrome"):
                for task in (proc / "task").iterdir():
                    os.setpriority(os.PRIO_PROCESS, int(task.name), niceness)
        except OSError:
            continue


def browser(profile: Path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium")
    for arg in (
        f"--user-data-dir={profile}",  # in the bench's temporary directory, removed with it
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--window-size=1280,900",
    ):
        options.add_argument(arg)
    return webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--detector", default="eiger2-4m")
    parser.add_argument("--frame-time", type=float, default=0.01)
    parser.add_argument("--nimages", type=int, default=1000)
    parser.add_argument(
        "--browser-nice",
        type=int,
        default=0,
        help="niceness for the browser's processes (19: as if it ran on another machine, as on a beamline)",
    )
    parser.add_argument(
        "--scene",
        default="",
        help='the simulated scene (default: the server\'s flood, as bench/e2e.py); \'{"kind": "mx"}\' renders every '
        "frame, which a 4M's modules do at about 15 Hz on 2 cores",
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        proc, url = start_server(Path(tmp), args.detector, args.scene)
        driver = None
        try:
            http = httpx.Client(base_url=url, timeout=300)

            def put(module: str, key: str, value: object) -> httpx.Response:
                return http.put(f"/{module}/api/{V}/config/{key}", json={"value": value})

            http.put(f"/detector/api/{V}/command/initialize").raise_for_status()
            put("detector", "nimages", args.nimages).raise_for_status()
            put("detector", "frame_time", args.frame_time).raise_for_status()
            put("detector", "count_time", args.frame_time).raise_for_status()
            put("monitor", "mode", "enabled").raise_for_status()

            def status(key: str) -> object:
                return http.get(f"/detector/api/{V}/status/{key}").json()["value"]

            table = ResultTable(
                f"Web-UI live image, {args.detector}, frame_time {args.frame_time} s, "
                f"{args.nimages} images ({os.cpu_count()} CPUs)"
            )
            # the same series without and with the Live image page open: what watching costs the acquisition
            for watched in (False, True):
                if watched:
                    driver = browser(Path(tmp) / "chromium-profile")
                    if args.browser_nice:
                        renice_browser(args.browser_nice)
                    driver.get(f"{url}/ui/live")
                    time.sleep(3)
                armed = http.put(f"/detector/api/{V}/command/arm")
                if armed.status_code != 200:
                    sys.exit(f"arm refused ({armed.status_code}): {armed.text}")
                before = driver.execute_script("return window.opendcuLive.stats.frames") if watched else 0
                cpu0 = cpu_by_thread()
                t0 = time.monotonic()
                http.put(f"/detector/api/{V}/command/trigger").raise_for_status()
                elapsed = time.monotonic() - t0
                print(
                    f"CPU during the series ({'watched' if watched else 'nobody watching'}): "
                    f"{busiest(cpu0, cpu_by_thread())}",
                    flush=True,
                )
                what = "with the Live image page" if watched else "nobody watching"
                table.add(f"images complete, {what}", status("daq/frames_complete"), "images")
                table.add(f"packets lost, {what}", status("daq/packets_lost"), "packets", goal="0")
                table.add(f"acquisition time, {what}", elapsed, "s")
                if watched:
                    shown = driver.execute_script("return window.opendcuLive.stats.frames") - before
                    table.add("live images drawn in the browser", shown, "images")
                    table.add("live image updates in the browser", shown / elapsed, "1/s", goal=">= 5/s")
            image = driver.execute_script("return window.opendcuLive.shown")
            query = {k: image[k] for k in ("series", "image", "bin", "x0", "y0", "w", "h", "scale")}
            # the image the page showed last: the server keeps the last few it decoded
            if http.get("/ui/api/monitor/view", params=query).status_code == 200:
                view_ms = median(time_call(lambda: http.get("/ui/api/monitor/view", params=query), repeat=9)) * 1e3
                tiff_url = f"/monitor/api/{V}/images/{query['series']}/{query['image']}"
                tiff = http.get(tiff_url)
                if tiff.status_code == 200:
                    tiff_ms = median(time_call(lambda: http.get(tiff_url), repeat=9)) * 1e3
                    table.add(
                        f"GET view of a decoded image, bin {image['bin']}",
                        view_ms,
                        "ms",
                        reference=tiff_ms,
                        ratio=view_ms / tiff_ms,
                        goal="reference: GET the monitor TIFF",
                    )
                else:
                    table.add(f"GET view of a decoded image, bin {image['bin']}", view_ms, "ms")
            table.print()
        finally:
            if driver is not None:
                driver.quit()
            proc.terminate()
            proc.wait(60)
    return 0


if __name__ == "__main__":
    sys.exit(main())
