"""The Web-UI (issue #12), driven in a real headless Chromium against one real `dcu serve` (simulated EIGER2 1M
with a crystal rotating in the beam): initialize, configure, arm and trigger from the buttons; live state and
progress; the live image's canvas against the server's rendering and the monitor TIFF; a refused value's text;
a download compared byte for byte; the System page's restart. Also the UI's own REST resources, and the
screenshots in docs/ that the README shows.

Chromium and its driver are Debian's `chromium` and `chromium-driver`; the session installs them when missing.
"""

from __future__ import annotations

import base64
import io
import json
import math
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import debian
import h5py
import httpx
import numpy as np
import pytest
import tifffile
from conftest import REPO, DcuServer, child_pids, start_dcu

pytestmark = pytest.mark.integration

V = "1.8.0"
NIMAGES = 30
COUNT_TIME = 0.1
DOCS = REPO / "docs"
LEVELS, GAP, MASKED = 250, 250, 251  # base/rest/ui_images.py


# -- fixtures ----------------------------------------------------------------------------------------------------
def _ensure_chromium() -> tuple[str, str]:
    """Debian's chromium and chromium-driver; installed with apt-get when missing (CI runs as root)."""
    if not (shutil.which("chromium") and shutil.which("chromedriver")):
        if os.geteuid() != 0:
            pytest.fail("chromium/chromedriver are missing: apt-get install chromium chromium-driver (needs root)")
        done = debian.install("browser")
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return shutil.which("chromium"), shutil.which("chromedriver")


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> DcuServer:
    dcu = start_dcu(
        tmp_path_factory.mktemp("webui"),
        detector="eiger2-1m",
        extra=["--scene", json.dumps({"kind": "mx"})],
        timeout=600,
    )
    try:
        yield dcu
    finally:
        if dcu.process.poll() is None:
            dcu.stop()


@pytest.fixture(scope="module")
def downloads(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("downloads")


@pytest.fixture(scope="module")
def browser(server: DcuServer, downloads: Path, tmp_path_factory):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    chromium, driver_path = _ensure_chromium()
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in (
        f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}",  # not a /tmp/org.chromium.* left behind
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--window-size=1280,860",
        "--disable-gpu",
        "--hide-scrollbars",
    ):
        options.add_argument(arg)
    options.add_experimental_option(
        "prefs", {"download.default_directory": str(downloads), "download.prompt_for_download": False}
    )
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    driver.set_script_timeout(120)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture(scope="module")
def http(server: DcuServer):
    with server.client() as client:
        yield client


# -- helpers -------------------------------------------------------------------------------------------------------
def wait_for(predicate, what: str, timeout: float = 120.0, interval: float = 0.1):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = predicate()
        except Exception as exc:  # the element may be re-rendered between find and read
            last = exc
        if last and not isinstance(last, Exception):
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what} (last: {last!r})")


def text_of(driver, element_id: str) -> str:
    return driver.execute_script(
        "const e = document.getElementById(arguments[0]); return e ? e.textContent : null;", element_id
    )


def open_page(driver, server: DcuServer, page: str) -> None:
    if not driver.current_url.startswith(server.url):
        driver.get(f"{server.url}/ui/{page}")
    else:
        driver.execute_script("window.opendcu.show(arguments[0])", page)
    wait_for(
        lambda: driver.execute_script(
            "return document.getElementById(arguments[0]).classList.contains('active')", f"page-{page}"
        ),
        f"page {page}",
    )


def header_state(driver) -> str:
    return text_of(driver, "state")


def set_field(driver, field_id: str, text: str) -> str:
    """Type into one key's editor and press its Set button; the note next to the field once answered."""
    from selenium.webdriver.common.by import By

    element = wait_for(lambda: driver.find_element(By.ID, field_id), field_id)
    if element.tag_name == "select":
        driver.execute_script(
            """const s = arguments[0]; s.value = JSON.stringify(arguments[1]);
            s.dispatchEvent(new Event('change'));""",
            element,
            text,
        )
    else:
        element.clear()
        element.send_keys(text)
        driver.find_element(By.ID, f"{field_id}-set").click()
    return wait_for(
        lambda: (t := text_of(driver, f"{field_id}-error")) not in (None, "", "…") and t, f"{field_id} answer"
    )


def click(driver, element_id: str) -> None:
    driver.execute_script("document.getElementById(arguments[0]).click()", element_id)


def rest(http: httpx.Client, module: str, task: str, key: str):
    r = http.get(f"/{module}/api/{V}/{task}/{key}")
    r.raise_for_status()
    return r.json()["value"]


def canvas_rgba(driver, canvas_id: str) -> np.ndarray:
    b64, w, h = driver.execute_script(
        """
        const c = document.getElementById(arguments[0]);
        const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        let s = ''; const step = 0x8000;
        for (let i = 0; i < d.length; i += step) s += String.fromCharCode.apply(null, d.subarray(i, i + step));
        return [btoa(s), c.width, c.height];""",
        canvas_id,
    )
    return np.frombuffer(base64.b64decode(b64), dtype=np.uint8).reshape(h, w, 4)


def reference_codes(pixels: np.ndarray, gaps: np.ndarray, b: int, lo: float, hi: float, log: bool) -> np.ndarray:
    """numpy reference of the server's rendering: max of the valid pixels per b x b block, scaled to codes."""
    invalid = np.iinfo(pixels.dtype).max
    h, w = pixels.shape
    H, W = -(-h // b), -(-w // b)
    padded = np.full((H * b, W * b), -1, dtype=np.int64)
    values = pixels.astype(np.int64)
    values[pixels == invalid] = -1
    padded[:h, :w] = values
    blocks = padded.reshape(H, b, W, b).max(axis=(1, 3))
    gap_pad = np.ones((H * b, W * b), dtype=bool)
    gap_pad[:h, :w] = gaps | (pixels != invalid)  # True where a pixel is a gap (or not invalid at all)
    all_gap = (
        (gap_pad & np.pad(pixels == invalid, ((0, H * b - h), (0, W * b - w)), constant_values=True))
        .reshape(H, b, W, b)
        .all(axis=(1, 3))
    )
    span = hi - lo if hi > lo else 1.0
    d = np.clip(blocks - lo, 0, None).astype(np.float64)
    t = np.log1p(d) / math.log1p(span) if log else d / span
    codes = np.minimum((t * LEVELS).astype(np.int64), LEVELS - 1).astype(np.uint8)
    codes[blocks < 0] = np.where(all_gap[blocks < 0], GAP, MASKED)
    return codes


def gap_mask(http: httpx.Client, shape) -> np.ndarray:
    r = http.get(f"/detector/api/{V}/config/pixel_mask", headers={"Accept": "image/tiff"})
    r.raise_for_status()
    mask = tifffile.imread(io.BytesIO(r.content))
    assert mask.shape == shape
    return (mask & 1).astype(bool)


# -- tests ---------------------------------------------------------------------------------------------------------
def test_vendored_files_match_their_pins():
    proc = subprocess.run(
        [os.sys.executable, str(REPO / "scripts" / "vendor_webui.py"), "--check"], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr


def test_root_serves_the_ui_from_the_package(http: httpx.Client):
    r = http.get("/", follow_redirects=False)
    assert r.status_code == 307 and r.headers["location"] == "/ui/"
    page = http.get("/", follow_redirects=True)
    assert page.status_code == 200 and '<script type="module" src="/ui/static/js/main.js">' in page.text
    assert "http://" not in page.text and "https://" not in page.text  # no CDN: every asset is local
    for asset in re.findall(r'(?:src|href)="(/ui/static/[^"]+)"', page.text):
        assert http.get(asset).status_code == 200, asset
    js = sorted((REPO / "src/opendcu/base/webui/js").glob("*.js"))
    assert js and all("https://" not in p.read_text() for p in js)
    assert http.get("/ui/analysis").text == page.text
    r = http.get("/ui/bogus")
    assert r.status_code == 404 and "does not exist" in r.text


def test_run_a_series_from_the_buttons(server: DcuServer, browser, http: httpx.Client):
    """Initialize, configure, arm and trigger from the Control page; the state and the progress change."""
    open_page(browser, server, "control")
    wait_for(lambda: header_state(browser) == "na", "state na")
    wait_for(lambda: browser.find_element("id", "cmd-arm").get_attribute("disabled") is not None, "arm disabled")
    assert "not initialized" in text_of(browser, "why-arm")
    assert browser.find_element("id", "cmd-initialize").get_attribute("disabled") is None
    click(browser, "cmd-initialize")
    wait_for(lambda: header_state(browser) == "idle", "state idle after initialize", timeout=180)
    assert rest(http, "detector", "status", "state") == "idle"

    assert "nimages" in set_field(browser, "quick-detector-nimages", str(NIMAGES))
    assert "count_time" in set_field(browser, "quick-detector-count_time", str(COUNT_TIME))
    assert "frame_time" in set_field(browser, "quick-detector-frame_time", str(COUNT_TIME))
    for module in ("filewriter", "monitor", "analysis"):
        assert "mode" in set_field(browser, f"quick-{module}-mode", "enabled")
    assert rest(http, "detector", "config", "nimages") == NIMAGES
    assert rest(http, "detector", "config", "count_time") == pytest.approx(COUNT_TIME, rel=1e-3)
    assert [rest(http, m, "config", "mode") for m in ("filewriter", "monitor", "analysis")] == ["enabled"] * 3

    wait_for(lambda: browser.find_element("id", "cmd-trigger").get_attribute("disabled") is not None, "trigger off")
    assert "not armed" in text_of(browser, "why-trigger")
    click(browser, "cmd-arm")
    wait_for(lambda: header_state(browser) == "ready", "state ready after arm", timeout=60)
    wait_for(lambda: browser.find_element("id", "cmd-trigger").get_attribute("disabled") is None, "trigger on")
    assert "not possible in state ready" in text_of(browser, "why-arm")
    click(browser, "cmd-trigger")

    open_page(browser, server, "overview")
    seen_states, seen_progress = set(), []
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        state = header_state(browser)
        seen_states.add(state)
        table = text_of(browser, "ov-series") or ""
        match = re.search(r"images settled / expected(\d+) / (\d+)", table)
        if match and (not seen_progress or seen_progress[-1] != match.groups()):
            seen_progress.append(match.groups())
        if state == "idle" and match and match.group(1) == str(NIMAGES):
            break
        time.sleep(0.1)
    assert "acquire" in seen_states and "idle" in seen_states, seen_states
    assert seen_progress[-1] == (str(NIMAGES), str(NIMAGES)), seen_progress
    assert any(0 < int(s) < NIMAGES for s, _ in seen_progress), f"no intermediate progress seen: {seen_progress}"
    summary = rest(http, "detector", "status", "series")  # app-detector's own summary of the series
    assert summary["series_id"] == 1 and summary["images_expected"] == NIMAGES
    outcome = wait_for(lambda: (t := text_of(browser, "ov-outcome")) and t.startswith("last series") and t, "outcome")
    assert outcome.startswith(
        f"last series 1 {summary['state']}: {summary['outcome']}; {summary['images_complete']} complete, "
        f"{summary['images_incomplete']} incomplete, {summary['images_lost']} lost of {NIMAGES} images; packets "
        f"{summary['packets_received']}/{summary['packets_expected']}"
    ), outcome
    expected_class = "good" if summary["outcome"] == "success" else "bad"
    assert expected_class in browser.find_element("id", "ov-outcome").get_attribute("class")
    interfaces = wait_for(
        lambda: (t := text_of(browser, "ov-interfaces")) and "FileWriterenabled · ready" in t and t,
        "the FileWriter ready again",
    )
    dropped = rest(http, "stream", "status", "dropped")
    assert f"Streamdisabled · {rest(http, 'stream', 'status', 'state')} · dropped {dropped}" in interfaces
    assert f"Monitorenabled · {rest(http, 'monitor', 'status', 'state')}" in interfaces
    assert "Analysisenabled · " in interfaces


def test_live_image_canvas_is_the_servers_rendering(server: DcuServer, browser, http: httpx.Client):
    open_page(browser, server, "live")
    latest = http.get(f"/monitor/api/{V}/images/")
    assert latest.status_code == 200
    series_images = dict((s, ids) for s, ids in latest.json())
    assert 1 in series_images and series_images[1], series_images
    shown = wait_for(
        lambda: (s := browser.execute_script("return window.opendcuLive.shown")) and s["series"] == 1 and s,
        "a live image of series 1",
    )
    # the canvas must show the image the server rendered for exactly that frame, region, binning and contrast
    wait_for(
        lambda: browser.execute_script(
            "const s = window.opendcuLive.shown; return s && s.bin === "
            "Math.max(1, Math.floor(1 / window.opendcuLive.view.s))"
        ),
        "fitted view",
    )
    browser.find_element("id", "live-pause").click()
    time.sleep(1.0)  # a request already in flight when pausing may still land
    shown = browser.execute_script("return window.opendcuLive.shown")
    raw = canvas_rgba(browser, "live-raw")
    lut = np.array(browser.execute_script("return Array.from(window.opendcuLive.lut)"), dtype=np.uint32)
    query = {k: shown[k] for k in ("series", "image", "bin", "x0", "y0", "w", "h", "scale")}
    r = http.get("/ui/api/monitor/view", params=query)
    assert r.status_code == 200, r.text
    codes = np.frombuffer(r.content, dtype=np.uint8).reshape(
        int(r.headers["x-opendcu-rows"]), int(r.headers["x-opendcu-cols"])
    )
    assert raw.shape[:2] == codes.shape
    expected = lut[codes].view(np.uint8).reshape(*codes.shape, 4)
    np.testing.assert_array_equal(raw, expected)
    levels = np.unique(codes[codes < LEVELS])
    assert len(levels) >= 3 and levels[-1] == LEVELS - 1, f"the live image is (nearly) blank: levels {levels}"
    assert lut[0] & 0xFFFFFF == 0x540144 or (lut[0] & 0xFF) < 0x50  # viridis starts dark purple

    # the server's rendering is the monitor image: compare with a numpy reference of the TIFF
    tiff = http.get(f"/monitor/api/{V}/images/{shown['series']}/{shown['image']}")
    assert tiff.status_code == 200
    pixels = tifffile.imread(io.BytesIO(tiff.content))
    gaps = gap_mask(http, pixels.shape)
    lo, hi = float(r.headers["x-opendcu-lo"]), float(r.headers["x-opendcu-hi"])
    region = pixels[shown["y0"] : shown["y0"] + shown["h"], shown["x0"] : shown["x0"] + shown["w"]]
    gregion = gaps[shown["y0"] : shown["y0"] + shown["h"], shown["x0"] : shown["x0"] + shown["w"]]
    reference = reference_codes(region, gregion, shown["bin"], lo, hi, shown["scale"] == "log")
    np.testing.assert_array_equal(codes, reference)
    assert (codes == GAP).any(), "the 1M has a module gap: they must show in the gap colour"

    # hover a pixel with counts: the cursor box reads the TIFF's counts
    from selenium.webdriver.common.action_chains import ActionChains

    ys, xs = np.nonzero((pixels > 2) & (pixels < np.iinfo(pixels.dtype).max))
    x, y = int(xs[len(xs) // 2]), int(ys[len(ys) // 2])
    # zoom in at that pixel (wheel; still paused on the same image) until it covers several screen pixels
    browser.execute_script(
        """const [sx, sy] = window.opendcuLive.screenOf(arguments[0], arguments[1]);
        const c = document.getElementById('live-view'), r = c.getBoundingClientRect();
        c.dispatchEvent(new WheelEvent('wheel', {deltaY: -1200, clientX: r.left + sx, clientY: r.top + sy}));""",
        x,
        y,
    )
    wait_for(
        lambda: browser.execute_script(
            "const s = window.opendcuLive.shown; return s && s.bin === 1 && s.w < s.W && window.opendcuLive.view.s > 2"
        ),
        "the zoomed view",
    )
    sx, sy = browser.execute_script("return window.opendcuLive.screenOf(arguments[0], arguments[1])", x, y)
    canvas = browser.find_element("id", "live-view")
    size = canvas.size
    ActionChains(browser).move_to_element_with_offset(
        canvas, int(sx - size["width"] / 2), int(sy - size["height"] / 2)
    ).perform()
    cursor = "return Object.assign({}, document.getElementById('live-cursor').dataset)"
    box = wait_for(lambda: (d := browser.execute_script(cursor)) and "counts" in d and d, "cursor readout")
    cx, cy = int(box["x"]), int(box["y"])
    assert (cx, cy) == (x, y)
    assert int(box["counts"]) == int(pixels[cy, cx])
    assert f"counts {int(pixels[cy, cx])}" in text_of(browser, "live-cursor")
    d = browser.execute_script("return window.opendcuLive.resolutionAt(arguments[0], arguments[1])", cx, cy)
    assert re.search(rf"d {d:.2f} Å", text_of(browser, "live-cursor"))
    browser.find_element("id", "live-pause").click()


def test_view_endpoint_bins_and_scales_like_numpy(http: httpx.Client):
    images = dict((s, ids) for s, ids in http.get(f"/monitor/api/{V}/images/").json())
    image = images[1][len(images[1]) // 2]
    pixels = tifffile.imread(io.BytesIO(http.get(f"/monitor/api/{V}/images/1/{image}").content))
    gaps = gap_mask(http, pixels.shape)
    for params in (
        {"bin": 1, "scale": "linear", "lo": 0, "hi": 20},
        {"bin": 3, "scale": "log", "lo": 1, "hi": 500},
        {"bin": 2, "scale": "linear", "x0": 100, "y0": 250, "w": 301, "h": 200, "lo": 0, "hi": 9},
    ):
        r = http.get("/ui/api/monitor/view", params={"series": 1, "image": image, **params})
        assert r.status_code == 200, r.text
        x0, y0 = params.get("x0", 0), params.get("y0", 0)
        w, h = params.get("w", pixels.shape[1]), params.get("h", pixels.shape[0])
        ref = reference_codes(
            pixels[y0 : y0 + h, x0 : x0 + w],
            gaps[y0 : y0 + h, x0 : x0 + w],
            params["bin"],
            params["lo"],
            params["hi"],
            params["scale"] == "log",
        )
        codes = np.frombuffer(r.content, dtype=np.uint8).reshape(ref.shape)
        np.testing.assert_array_equal(codes, ref)
    r = http.get("/ui/api/monitor/pixel", params={"series": 1, "image": image, "x": 5, "y": 7})
    assert r.json() == {
        "series": 1,
        "image": image,
        "x": 5,
        "y": 7,
        "counts": int(pixels[7, 5]),
        "kind": "counts" if pixels[7, 5] != np.iinfo(pixels.dtype).max else ("gap" if gaps[7, 5] else "masked"),
    }


def test_master_summary_reads_the_file(http: httpx.Client, server: DcuServer):
    summary = http.get("/ui/api/files/series_1_master.h5/summary").json()
    with h5py.File(server.data_dir / "series_1_master.h5") as f:
        det = f["/entry/instrument/detector"]
        data = f["/entry/data"]
        shapes = [data[k].shape for k in sorted(data)]
        assert summary["images"] == sum(s[0] for s in shapes) == NIMAGES
        assert summary["image_shape"] == list(shapes[0][1:])
        for key in ("beam_center_x", "beam_center_y", "detector_distance", "bit_depth_image", "count_time"):
            assert summary[key] == det[key][()].item(), key
        assert summary["compression"] == det["detectorSpecific/compression"][()].decode()
        assert summary["wavelength"] == f["/entry/instrument/beam/incident_wavelength"][()].item()
        assert summary["hdf5_filters"] and summary["dtype"] == data[sorted(data)[0]].dtype.str


@pytest.mark.parametrize(
    "query, text",
    [
        ({"bin": 0}, "query parameter bin must be >= 1, got 0"),
        ({"bin": "x"}, "query parameter bin must be an integer, got 'x'"),
        ({"scale": "cubic"}, "scale must be one of auto, linear, log, got 'cubic'"),
        ({"series": 1}, "give both series and image, or neither (the newest image)"),
        ({"lo": "nan"}, "query parameter lo must be finite, got 'nan'"),
        ({"x0": 100000}, "region start (100000, 0) is outside the"),
    ],
)
def test_view_refuses_bad_input_with_a_clear_400(http: httpx.Client, query, text):
    r = http.get("/ui/api/monitor/view", params=query)
    assert r.status_code == 400 and r.text.startswith(text), r.text


def test_ui_rest_refusals(http: httpx.Client, server: DcuServer):
    assert http.get("/ui/api/monitor/view", params={"series": 999, "image": 1}).status_code == 404
    r = http.get("/ui/api/files/..%2F..%2Fetc%2Fpasswd/summary")
    assert r.status_code in (400, 404) and r.text
    (server.data_dir / "notes.txt").write_text("not hdf5")
    r = http.get("/ui/api/files/notes.txt/summary")
    assert r.status_code == 400 and r.text.startswith("notes.txt is not a readable HDF5 file")
    (server.data_dir / "notes.txt").unlink()
    r = http.put("/ui/api/apps/app-nothing/restart")
    assert r.status_code == 404
    assert r.text == "app app-nothing does not exist (apps: simulator, app-calibration, app-detector)"
    assert http.get("/ui/api/system", params={"log": "x"}).status_code == 400


def test_refused_value_shows_the_rest_text_next_to_its_field(server: DcuServer, browser, http: httpx.Client):
    open_page(browser, server, "configuration")
    wait_for(lambda: browser.find_elements("id", "cfg-detector-nimages"), "the detector's keys", timeout=180)
    for key, typed, sent in (("nimages", "x", "x"), ("count_time", "1e9", 1e9)):
        note = set_field(browser, f"cfg-detector-{key}", typed)
        answer = http.put(f"/detector/api/{V}/config/{key}", json={"value": sent})
        assert answer.status_code == 400
        assert note == f"400: {answer.text}"
    assert rest(http, "detector", "config", "nimages") == NIMAGES  # refused: nothing changed
    # every module's keys are listed, with their metadata
    for module in ("detector", "filewriter", "stream", "monitor", "analysis", "system"):
        assert browser.find_elements("id", f"cfg-module-{module}"), module
    row = browser.find_element("css selector", 'tr[data-key="detector/config/count_time"]').text
    assert "float" in row and "rw" in row and " s" in row
    note = set_field(browser, "cfg-detector-frame_time", "0.2")
    assert note.startswith("changed: ") and "frame_time" in note and "count_time" in note
    wait_for(
        lambda: (
            "changed"
            in browser.find_element("css selector", 'tr[data-key="detector/config/count_time"]').get_attribute("class")
        ),
        "count_time marked as changed",
    )


def test_files_download_summary_delete(server: DcuServer, browser, http: httpx.Client, downloads: Path):
    open_page(browser, server, "files")
    names = sorted(p.name for p in server.data_dir.iterdir() if p.suffix == ".h5")
    assert "series_1_master.h5" in names and any("data" in n for n in names), names
    data_name = next(n for n in names if "data" in n)
    wait_for(lambda: browser.find_elements("css selector", f'tr[data-name="{data_name}"] a.download'), "files table")
    browser.find_element("css selector", f'tr[data-name="{data_name}"] a.download').click()
    target = downloads / data_name
    wait_for(
        lambda: target.is_file() and target.stat().st_size == (server.data_dir / data_name).stat().st_size,
        "the download",
        timeout=120,
    )
    assert target.read_bytes() == (server.data_dir / data_name).read_bytes()

    browser.find_element("css selector", 'tr[data-name="series_1_master.h5"] button.summary').click()
    table = wait_for(lambda: text_of(browser, "files-summary-table"), "master summary")
    with h5py.File(server.data_dir / "series_1_master.h5") as f:
        bit_depth = int(f["/entry/instrument/detector/bit_depth_image"][()])
    assert f"images{NIMAGES} (nimages {NIMAGES} × ntrigger 1)" in table
    assert f"bit depth (image / readout){bit_depth} / " in table and "compressionbslz4 (HDF5 filters: " in table

    victim = data_name
    for _ in range(2):  # delete asks twice
        browser.find_element("css selector", f'tr[data-name="{victim}"] button.delete').click()
    wait_for(lambda: not (server.data_dir / victim).exists(), "the file deleted")
    assert http.head(f"/data/{victim}").status_code == 404
    wait_for(lambda: not browser.find_elements("css selector", f'tr[data-name="{victim}"]'), "row removed")


def screenshot_dir(tmp_path: Path) -> Path:
    """Where the screenshots go: docs/ only when asked ($OPENDCU_UPDATE_SCREENSHOTS=1), so that a test run never
    changes the checkout (CI's clean clone stays clean)."""
    return DOCS if os.environ.get("OPENDCU_UPDATE_SCREENSHOTS") == "1" else tmp_path


def _screenshot(browser, folder: Path, page: str) -> int:
    path = folder / f"webui-{page}.png"
    path.write_bytes(browser.get_screenshot_as_png())
    return path.stat().st_size


def test_screenshots_of_a_real_mx_series(server: DcuServer, browser, http: httpx.Client, tmp_path: Path):
    """Overview (while the series runs), Analysis and Live image of an MX series, for the README (docs/webui-*.png,
    rewritten with OPENDCU_UPDATE_SCREENSHOTS=1)."""
    folder = screenshot_dir(tmp_path)
    folder.mkdir(exist_ok=True)
    sizes = {}
    for key, value in (("nimages", 16), ("count_time", 0.5), ("frame_time", 0.5)):
        assert http.put(f"/detector/api/{V}/config/{key}", json={"value": value}).status_code == 200
    open_page(browser, server, "control")
    wait_for(lambda: browser.find_element("id", "cmd-arm").get_attribute("disabled") is None, "arm enabled")
    click(browser, "cmd-arm")
    wait_for(lambda: browser.find_element("id", "cmd-trigger").get_attribute("disabled") is None, "trigger enabled")
    click(browser, "cmd-trigger")
    open_page(browser, server, "overview")
    wait_for(
        lambda: re.search(r"images settled / expected([4-9]|1[0-4]) / 16", text_of(browser, "ov-series") or ""),
        "series 2 half way",
        timeout=300,
        interval=0.05,
    )
    assert "running series 2" in text_of(browser, "ov-outcome")
    sizes["overview"] = _screenshot(browser, folder, "overview")
    wait_for(lambda: header_state(browser) == "idle", "series 2 done", timeout=300)

    open_page(browser, server, "analysis")
    summary = wait_for(
        lambda: (s := http.get(f"/analysis/api/{V}/summary").json()) and s["series_id"] == 2 and s["finished"] and s,
        "analysis of series 2 finished",
        timeout=300,
        interval=0.5,
    )
    results = http.get(f"/analysis/api/{V}/results", params={"series": 2, "spots": "true"}).json()["results"]
    assert results and len(results) == summary["images_analysed"]
    wait_for(lambda: f"{len(results)} images with results" in (text_of(browser, "an-summary") or ""), "plots updated")
    wait_for(lambda: browser.execute_script("return document.getElementById('an-profile').dataset.image"), "profile")
    time.sleep(1.0)  # the plots redraw at most 4 times a second
    sizes["analysis"] = _screenshot(browser, folder, "analysis")

    best = max(results, key=lambda r: r["n_spots"])  # the spot finder may find none in a weak image
    open_page(browser, server, "live")
    goto = browser.find_element("id", "live-goto")
    goto.send_keys(str(best["image_id"]))
    browser.execute_script("arguments[0].dispatchEvent(new Event('change'))", goto)
    wait_for(
        lambda: (
            (s := browser.execute_script("return window.opendcuLive.shown"))
            and s["series"] == 2
            and s["image"] == best["image_id"]
        ),
        "the analysed image shown",
    )
    wait_for(lambda: text_of(browser, "live-spots-note") == f"{best['n_spots']} spots", "its spot count")
    browser.find_element("id", "live-fit").click()  # the previous test left the view zoomed in
    browser.execute_script("""const c = document.getElementById('live-view'), r = c.getBoundingClientRect();
        c.dispatchEvent(new WheelEvent("wheel", {deltaY: -900, clientX: r.left + r.width / 2,
                                                 clientY: r.top + r.height / 2, bubbles: true}));""")
    assert len(best["spots"]["x"]) == best["n_spots"]
    x, y = (int(best["spots"]["x"][0]), int(best["spots"]["y"][0])) if best["n_spots"] else (300, 300)
    wait_for(
        lambda: browser.execute_script("const s = window.opendcuLive.shown; return s && s.bin === 1 && s.w < s.W"),
        "the zoomed region rendered",
    )
    from selenium.webdriver.common.action_chains import ActionChains

    sx, sy = browser.execute_script("return window.opendcuLive.screenOf(arguments[0], arguments[1])", x, y)
    canvas = browser.find_element("id", "live-view")
    if 0 < sx < canvas.size["width"] and 0 < sy < canvas.size["height"]:
        ActionChains(browser).move_to_element_with_offset(
            canvas, int(sx - canvas.size["width"] / 2), int(sy - canvas.size["height"] / 2)
        ).perform()
        wait_for(
            lambda: (
                "counts"
                in browser.execute_script("return Object.assign({}, document.getElementById('live-cursor').dataset)")
            ),
            "cursor readout",
        )
    time.sleep(0.5)
    sizes["live"] = _screenshot(browser, folder, "live")
    # what the screenshot shows is the monitor image: the canvas against the TIFF's numpy rendering
    shown = browser.execute_script("return window.opendcuLive.shown")
    raw = canvas_rgba(browser, "live-raw")
    lut = np.array(browser.execute_script("return Array.from(window.opendcuLive.lut)"), dtype=np.uint32)
    tiff = http.get(f"/monitor/api/{V}/images/{shown['series']}/{shown['image']}")
    assert tiff.status_code == 200, tiff.text
    pixels = tifffile.imread(io.BytesIO(tiff.content))
    gaps = gap_mask(http, pixels.shape)
    rows, cols = slice(shown["y0"], shown["y0"] + shown["h"]), slice(shown["x0"], shown["x0"] + shown["w"])
    reference = reference_codes(
        pixels[rows, cols], gaps[rows, cols], shown["bin"], shown["lo"], shown["hi"], shown["scale"] == "log"
    )
    np.testing.assert_array_equal(raw, lut[reference].view(np.uint8).reshape(*reference.shape, 4))
    goto.clear()
    browser.execute_script("arguments[0].dispatchEvent(new Event('change'))", goto)
    assert all(size < 300_000 for size in sizes.values()), sizes


def test_calibration_page_shows_the_active_set_per_module(server: DcuServer, browser, http: httpx.Client):
    """A custom flatfield (uploaded over REST, so it becomes the active set) shows on the Calibration page: the map
    is the server's binned rendering drawn through the colour table, the modules are the geometry's, and each
    module's statistics are numpy's of the same pixels. A refused procedure shows REST's text next to it."""
    from opendcu.base.rest.responses import darray, darray_to_array
    from opendcu.geometry import DetectorLayout, get_model

    C = f"/calibration/api/{V}"
    assert http.put(f"/detector/api/{V}/command/initialize").status_code == 200
    before = rest(http, "calibration", "status", "active_set")
    mask = darray_to_array(http.get(f"{C}/config/pixel_mask").json()["value"]).astype(np.uint32)
    h, w = mask.shape
    flat = (1.0 + 0.2 * np.add.outer(np.arange(h) / h, np.arange(w) / w)).astype(np.float32)  # a gradient
    assert http.put(f"{C}/config/flatfield", json={"value": darray(flat)}).status_code == 200
    custom = rest(http, "calibration", "status", "active_set")
    assert custom.startswith("custom-")
    try:
        open_page(browser, server, "calibration")
        wait_for(lambda: custom in (text_of(browser, "cal-active") or ""), "the active set on the page")
        map_of = "return window.opendcuCalibration.map"
        answer = wait_for(lambda: (m := browser.execute_script(map_of)) and m["kind"] == "flatfield" and m, "map")
        assert answer == http.get("/ui/api/calibration/map", params={"kind": "flatfield"}).json()
        codes = np.frombuffer(base64.b64decode(answer["codes"]), np.uint8).reshape(answer["rows"], answer["cols"])
        lut = np.array(browser.execute_script("return Array.from(window.opendcuLive.lut)"), dtype=np.uint32)
        drawn = canvas_rgba(browser, "cal-map").view("<u4")[..., 0]
        np.testing.assert_array_equal(drawn, lut[codes])
        # the reference: the modules from the geometry, statistics and codes by numpy from the REST arrays
        layout = DetectorLayout(get_model("eiger2-1m"))
        regions = sorted(
            (ys.start, xs.start, ys.stop - ys.start, xs.stop - xs.start)
            for ys, xs in (layout.module_slices(m) for m in layout.modules)
        )
        assert sorted((m["y0"], m["x0"], m["h"], m["w"]) for m in answer["modules"]) == regions
        valid = mask == 0
        lo, hi = np.percentile(flat[valid], (0.5, 99.5))
        assert (answer["lo"], answer["hi"]) == pytest.approx((lo, hi), rel=1e-6)
        b = answer["bin"]
        assert b == -(-max(h, w) // 640)
        for m in answer["modules"]:
            region = np.s_[m["y0"] : m["y0"] + m["h"], m["x0"] : m["x0"] + m["w"]]
            v = flat[region][valid[region]].astype(np.float64)
            assert (m["mean"], m["std"]) == pytest.approx((v.mean(), v.std()), rel=1e-6)
            assert sum(m["histogram"]["counts"]) == np.count_nonzero((v >= lo) & (v <= hi))
            assert m["masked"] == np.count_nonzero(mask[region] & ~np.uint32(1))
        y, x = answer["modules"][0]["y0"] // b + 3, answer["modules"][0]["x0"] // b + 3  # a block inside module 0
        block = flat[y * b : (y + 1) * b, x * b : (x + 1) * b][valid[y * b : (y + 1) * b, x * b : (x + 1) * b]]
        assert codes[y, x] == min(249, max(0, int((block.mean() - lo) / (hi - lo) * 250)))
        # the module chooser shows that module's numbers
        browser.execute_script(
            "const s = document.getElementById('cal-module'); s.value = '1'; s.dispatchEvent(new Event('change'));"
        )
        shown = wait_for(lambda: browser.execute_script("return window.opendcuCalibration.module"), "module 1")
        assert shown["index"] == 1 and f"{shown['mean']:.5g}" in text_of(browser, "cal-module-stats")
        # a refused start: the same text as REST gives
        browser.execute_script(
            "document.getElementById('cal-procedure').value = 'flatfield';"
            "document.getElementById('cal-params').value = '{\"precision\": -1}';"
        )
        click(browser, "cal-start")
        refused = http.put(f"{C}/command/start", json={"value": {"procedure": "flatfield", "precision": -1}})
        assert refused.status_code == 400
        wait_for(lambda: text_of(browser, "cal-run-refusal") == f"400: {refused.text}", "the refusal on the page")
    finally:
        assert http.put(f"{C}/command/activate", json={"value": before}).status_code == 200


def test_restart_app_detector_from_the_system_page(server: DcuServer, browser, http: httpx.Client):
    open_page(browser, server, "system")
    row = wait_for(lambda: browser.find_element("css selector", 'tr[data-app="app-detector"]').text, "apps table")
    info = http.get("/ui/api/system", params={"log": 200}).json()
    apps = {a["name"]: a for a in info["apps"]}
    assert set(apps) == {"simulator", "app-calibration", "app-detector"}
    assert set(a["pid"] for a in apps.values()) <= set(child_pids(server.process.pid))
    old_pid = apps["app-detector"]["pid"]
    assert f"app-detector running {old_pid}" in row and row.endswith("0 restart")
    assert info["config"]["detector"] == "eiger2-1m" and info["config"]["port"] == server.port
    assert "eiger2-1m" in text_of(browser, "sys-config")
    # the apps' output (their logging included) is kept: app-detector's summary line of series 2 is there
    ends = [line for line in apps["app-detector"]["log"] if re.search(r"series 2 \w+: ", line)]
    assert ends, apps["app-detector"]["log"][-5:]
    wait_for(lambda: ends[-1] in (text_of(browser, "sys-logs") or ""), "the log lines on the page")
    assert rest(http, "detector", "status", "state") != "na"
    click(browser, "restart-app-detector")
    wait_for(lambda: header_state(browser) == "na", "state na after the restart", timeout=180)
    assert rest(http, "detector", "status", "state") == "na"
    apps = {a["name"]: a for a in http.get("/ui/api/system").json()["apps"]}
    assert apps["app-detector"]["restarts"] == 1 and apps["app-detector"]["pid"] != old_pid
    wait_for(lambda: "restarted" in (text_of(browser, "restart-note-app-detector") or ""), "restart note")
