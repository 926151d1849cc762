"""`dcu calibrate …`: run calibration procedures and manage calibration sets over REST (module `calibration`).

dcu calibrate flatfield --photon-energy 8000 --precision 0.005    (a progress bar until it ends)
dcu calibrate pixel-mask | countrate | threshold | factory
dcu calibrate sets | activate ID | delete ID | compare A B | show ID | cancel | status
"""

from __future__ import annotations

import json
import time
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn

from opendcu.cli import client

app = typer.Typer(no_args_is_help=True, help="Calibrate the detector (flatfield, pixel mask, count rate, threshold).")
UrlOption = Annotated[str, typer.Option("--url", envvar="OPENDCU_URL", help="base URL of the DCU")]
DEFAULT_URL = "http://127.0.0.1:8080"
BASE = "/calibration/api/1.8.0"


def _status(url: str, key: str) -> Any:
    return client.request(url, "GET", f"{BASE}/status/{key}")["value"]


def _command(url: str, name: str, value: Any = None) -> Any:
    body = None if value is None else {"value": value}
    return client.request(url, "PUT", f"{BASE}/command/{name}", body)


def run_procedure(url: str, procedure: str, params: dict[str, Any], wait: bool = True) -> None:
    """Start a procedure and show its progress until it ends; exit code 1 unless it is done."""
    _command(url, "start", {"procedure": procedure, **{k: v for k, v in params.items() if v is not None}})
    if not wait:
        typer.echo(f"{procedure} started")
        return
    columns = (
        TextColumn("[bold]{task.fields[name]}"),
        BarColumn(),
        TaskProgressColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[message]}"),
    )
    try:
        with Progress(*columns, transient=False) as bar:
            task = bar.add_task(procedure, total=1.0, name=procedure, message="")
            while True:
                state = _status(url, "state")
                bar.update(task, completed=_status(url, "progress"), message=_status(url, "message"))
                if state != "running":
                    break
                time.sleep(0.3)
    except KeyboardInterrupt:
        _command(url, "cancel")
        typer.echo("cancelled; the active set is unchanged", err=True)
        raise typer.Exit(130) from None
    if state != "done":
        error = _status(url, "error")
        typer.echo(f"{procedure} {state}{': ' + error if error else ''}", err=True)
        raise typer.Exit(1)
    typer.echo(f"new active set: {_status(url, 'result')}")


PhotonEnergy = Annotated[float, typer.Option(help="photon energy (eV)")]
Precision = Annotated[float | None, typer.Option(help="statistical precision per pixel, e.g. 0.005")]
NoWait = Annotated[bool, typer.Option("--no-wait", help="start it and return")]


@app.command()
def flatfield(
    photon_energy: PhotonEnergy = 8000.0,
    threshold_energy: Annotated[float | None, typer.Option(help="threshold (eV), default E/2")] = None,
    precision: Precision = None,
    no_wait: NoWait = False,
    url: UrlOption = DEFAULT_URL,
) -> None:
    """Measure the flatfield at one photon / threshold energy from floods."""
    run_procedure(
        url,
        "flatfield",
        {"photon_energy": photon_energy, "threshold_energy": threshold_energy, "precision": precision},
        not no_wait,
    )


@app.command("pixel-mask")
def pixel_mask(photon_energy: PhotonEnergy = 8000.0, no_wait: NoWait = False, url: UrlOption = DEFAULT_URL) -> None:
    """Find dead, under-/over-responding (floods) and hot/noisy (darks) pixels."""
    run_procedure(url, "pixel_mask", {"photon_energy": photon_energy}, not no_wait)


@app.command()
def countrate(no_wait: NoWait = False, url: UrlOption = DEFAULT_URL) -> None:
    """Measure each module's dead time from a flux series."""
    run_procedure(url, "countrate", {}, not no_wait)


@app.command()
def threshold(
    energies: Annotated[str, typer.Option(help="photon energies (eV), comma separated")] = "8000,12000",
    no_wait: NoWait = False,
    url: UrlOption = DEFAULT_URL,
) -> None:
    """Threshold scans at two or more photon energies: the threshold-to-energy relation per module."""
    run_procedure(url, "threshold", {"energies": [float(e) for e in energies.split(",")]}, not no_wait)


@app.command()
def factory(
    energies: Annotated[str, typer.Option(help="flatfield photon energies (eV)")] = "8000,12000,20000",
    precision: Precision = None,
    no_wait: NoWait = False,
    url: UrlOption = DEFAULT_URL,
) -> None:
    """The whole factory calibration (mask, flatfields, dead time, threshold) into one set."""
    run_procedure(
        url, "factory", {"energies": [float(e) for e in energies.split(",")], "precision": precision}, not no_wait
    )


@app.command()
def cancel(url: UrlOption = DEFAULT_URL) -> None:
    """Cancel the running procedure (the active set stays)."""
    _command(url, "cancel")


@app.command()
def status(url: UrlOption = DEFAULT_URL) -> None:
    """The running (or last) procedure and the active set."""
    keys = ("state", "procedure", "progress", "message", "error", "result", "active_set")
    typer.echo(json.dumps({k: _status(url, k) for k in keys}))


@app.command()
def sets(url: UrlOption = DEFAULT_URL) -> None:
    """List the calibration sets (* = active)."""
    active = _status(url, "active_set")
    for set_id in _status(url, "sets"):
        typer.echo(f"{'*' if set_id == active else ' '} {set_id}")


@app.command()
def show(set_id: str, url: UrlOption = DEFAULT_URL) -> None:
    """A set's summary and provenance."""
    client.show(_command(url, "describe", set_id))


@app.command()
def activate(set_id: str, url: UrlOption = DEFAULT_URL) -> None:
    """Make a set the active one."""
    _command(url, "activate", set_id)


@app.command()
def delete(set_id: str, url: UrlOption = DEFAULT_URL) -> None:
    """Delete a set that is not active."""
    _command(url, "delete", set_id)


@app.command()
def compare(
    a: str, b: str, photon_energy: Annotated[float | None, typer.Option()] = None, url: UrlOption = DEFAULT_URL
) -> None:
    """What differs between two sets."""
    body: dict[str, Any] = {"a": a, "b": b}
    if photon_energy is not None:
        body["photon_energy"] = photon_energy
    client.show(_command(url, "compare", body))
