"""`dcu trigger`, `dcu wait` and `dcu watch`: a series' progress while it runs, its summary when it ends.

The summary is `GET /detector/api/1.8.0/status/series` (app_detector/control/outcome.py). On a terminal a rich
progress bar shows images settled / expected, the rate and the losses; otherwise (pipes, logs) only the summary
is printed, as one JSON object. Exit codes: 0 every image complete everywhere, 1 a request was refused,
2 the DCU cannot be reached, 3 images or packets were lost or dropped (the summary says which).
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import httpx
import typer

from opendcu.cli.client import auth_headers

SERIES_PATH = "/detector/api/1.8.0/status/series"
EXIT_LOSS = 3
POLL = 0.2


def fetch_summary(url: str) -> dict[str, Any]:
    try:
        response = httpx.get(url.rstrip("/") + SERIES_PATH, timeout=30, headers=auth_headers())
    except httpx.HTTPError as exc:
        typer.echo(f"cannot reach {url}: {exc}", err=True)
        raise typer.Exit(2) from None
    if response.status_code >= 400:
        typer.echo(f"error {response.status_code}: {response.text}", err=True)
        raise typer.Exit(1)
    return response.json().get("value") or {}


def lost_anything(summary: dict[str, Any]) -> bool:
    return summary.get("outcome") not in (None, "success", "running")


def losses_text(s: dict[str, Any]) -> str:
    dropped = s.get("interfaces", {}).get("stream", {}).get("dropped", 0)
    return (
        f"incomplete {s.get('images_incomplete', 0)}  lost {s.get('images_lost', 0)}  "
        f"packets lost {s.get('packets_lost', 0)}  stream dropped {dropped}"
    )


def follow(url: str, done: Callable[[], bool], series_id: int | None = None) -> dict[str, Any]:
    """Show the running series' progress until `done()`; return the last summary read."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    summary: dict[str, Any] = {}
    with Progress(
        TextColumn("series {task.fields[series]}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]} Hz"),
        TextColumn("{task.fields[losses]}"),
        TimeElapsedColumn(),
        transient=False,
    ) as progress:
        task = progress.add_task("series", total=None, series="?", rate="0", losses="")
        while True:
            finished = done()
            summary = fetch_summary(url)
            if summary and (series_id is None or summary.get("series_id") == series_id):
                progress.update(
                    task,
                    total=summary["images_expected"],
                    completed=summary["images_settled"],
                    series=summary["series_id"],
                    rate=f"{summary['rate_hz']:.0f}",
                    losses=losses_text(summary),
                )
            if finished:
                return summary
            time.sleep(POLL)


def run_with_progress(url: str, request: Callable[[], Any], show_progress: bool | None = None) -> None:
    """Run `request` (the trigger or wait PUT); meanwhile show progress on a terminal; then print the summary
    and exit 3 when anything was lost."""
    if show_progress is None:
        show_progress = sys.stdout.isatty()
    outcome: dict[str, Any] = {}

    def call() -> None:
        try:
            request()
        except typer.Exit as exc:
            outcome["exit"] = exc.exit_code
        except BaseException as exc:  # reported after the progress display ends
            outcome["error"] = exc

    worker = threading.Thread(target=call, daemon=True)
    worker.start()
    if show_progress:
        follow(url, lambda: not worker.is_alive())
    worker.join()
    if "error" in outcome:
        raise outcome["error"]
    if outcome.get("exit"):
        raise typer.Exit(outcome["exit"])
    report(fetch_summary(url))


def report(summary: dict[str, Any]) -> None:
    typer.echo(json.dumps(summary))
    if lost_anything(summary):
        typer.echo(f"series {summary['series_id']}: {summary['outcome']}: " + "; ".join(summary["problems"]), err=True)
        raise typer.Exit(EXIT_LOSS)


def watch(url: str, once: bool = False) -> None:
    """Follow the series that runs now (or the next one armed) until it ends; print its summary."""
    seen: dict[str, Any] = {}

    def ended() -> bool:
        s = fetch_summary(url)
        if s.get("state") == "running":
            seen.update(s)
            return False
        return bool(seen) and s.get("series_id") == seen.get("series_id") or once

    if sys.stdout.isatty():
        follow(url, ended)
    else:
        while not ended():
            time.sleep(POLL)
    report(fetch_summary(url))
