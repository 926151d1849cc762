"""The `dcu` command: `dcu serve` runs a DCU; the other commands drive one over REST."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from opendcu.cli import calibrate, client, series
from opendcu.geometry import MODELS

app = typer.Typer(
    add_completion=False, no_args_is_help=True, help="opendcu: Detector Control Unit with simulated modules."
)

UrlOption = Annotated[str, typer.Option("--url", envvar="OPENDCU_URL", help="base URL of the DCU")]
DEFAULT_URL = "http://127.0.0.1:8080"
DEFAULT_DETECTOR = "eiger2-4m"
DEFAULT_CALIBRATION_DIR = Path("opendcu-calibration")  # relative to where `dcu serve` runs


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="interface for REST and streams")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="REST port")] = 8080,
    detector: Annotated[str, typer.Option(help=f"detector model: {', '.join(MODELS)}")] = DEFAULT_DETECTOR,
    data_dir: Annotated[Path, typer.Option(help="where the FileWriter puts files")] = Path("opendcu-data"),
    calibration_dir: Annotated[Path, typer.Option(help="calibration sets (HDF5)")] = DEFAULT_CALIBRATION_DIR,
    stream_v1_port: Annotated[int, typer.Option(help="ZeroMQ port of stream V1 (legacy)")] = 9999,
    stream_v2_port: Annotated[int, typer.Option(help="ZeroMQ port of stream V2 (CBOR)")] = 31001,
    pipeline_workers: Annotated[int, typer.Option(help="image pipeline worker processes")] = 2,
    scene: Annotated[str, typer.Option(help='simulated scene as JSON, e.g. \'{"kind": "flood", "mean": 5}\'')] = "",
    raw_buffer_mib: Annotated[
        int,
        typer.Option(
            min=1,
            help="shared memory for raw frames, MiB: each series gets as many slots of one image (all its "
            "auto-summation sub-frames) as fit, at most 8192; arm refuses a count_time of which fewer than 2 "
            "images fit",
        ),
    ] = 1024,
    image_buffer_mib: Annotated[
        int,
        typer.Option(
            min=1,
            help="shared memory for compressed images, MiB: each series gets as many slots of its images' "
            "compressed bound (by bit depth) as fit, at least 8 and at most 8192; the Stream buffers half of them",
        ),
    ] = 512,
    auth_token: Annotated[
        str,
        typer.Option(
            envvar="OPENDCU_AUTH_TOKEN",
            show_default=False,
            help="a secret every HTTP request (REST, /data, WebDAV) must carry: 'Authorization: Bearer <token>' or as "
            "the password of basic authentication; the dcu client commands send $OPENDCU_AUTH_TOKEN",
        ),
    ] = "",
) -> None:
    """Run the DCU with a simulated detector until Ctrl-C."""
    from opendcu.base.server import serve as run_server
    from opendcu.base.server_config import ServerConfig

    if detector not in MODELS:
        raise typer.BadParameter(
            f"unknown detector {detector!r}; choose from {', '.join(MODELS)}", param_hint="--detector"
        )
    code = run_server(
        ServerConfig(
            host=host,
            port=port,
            detector=detector,
            data_dir=data_dir,
            stream_v1_port=stream_v1_port,
            stream_v2_port=stream_v2_port,
            pipeline_workers=pipeline_workers,
            scene=scene,
            raw_buffer_mib=raw_buffer_mib,
            image_buffer_mib=image_buffer_mib,
            calibration_dir=calibration_dir,
            auth_token=auth_token,
        )
    )
    raise typer.Exit(code)


@app.command()
def status(
    key: Annotated[str, typer.Argument(help="status key")] = "state",
    module: Annotated[str, typer.Option(help="detector, filewriter, stream, monitor")] = "detector",
    full: Annotated[bool, typer.Option("--full", help="print the whole SIMPLON GET object")] = False,
    url: UrlOption = DEFAULT_URL,
) -> None:
    """Read a status value (default: detector state)."""
    client.show(client.request(url, "GET", f"/{module}/api/1.8.0/status/{key}"), full)


@app.command()
def config(
    key: Annotated[str, typer.Argument(help="config key, or 'keys' to list them")],
    value: Annotated[str | None, typer.Argument(help="new value (JSON, or a plain string)")] = None,
    module: Annotated[str, typer.Option(help="detector, filewriter, stream, monitor")] = "detector",
    full: Annotated[bool, typer.Option("--full", help="print the whole SIMPLON GET object")] = False,
    url: UrlOption = DEFAULT_URL,
) -> None:
    """Read a config value, or set it when VALUE is given."""
    path = f"/{module}/api/1.8.0/config/{key}"
    if value is None:
        client.show(client.request(url, "GET", path), full)
    else:
        client.show(client.request(url, "PUT", path, {"value": client.parse_value(value)}))


#: commands that take images: they show progress on a terminal, print the series summary, exit 3 on any loss
SERIES_COMMANDS = ("trigger", "wait")


def _command(name: str, doc: str):
    def run(
        argument: Annotated[str | None, typer.Argument(help="optional argument (JSON)")] = None,
        module: Annotated[str, typer.Option(help="detector, filewriter, stream, monitor")] = "detector",
        url: UrlOption = DEFAULT_URL,
    ) -> None:
        body = None if argument is None else {"value": client.parse_value(argument)}
        path = f"/{module}/api/1.8.0/command/{name}"
        if name in SERIES_COMMANDS and module == "detector":
            series.run_with_progress(url, lambda: client.request(url, "PUT", path, body))
        else:
            client.show(client.request(url, "PUT", path, body))
        if name == "arm" and module == "detector":  # what the series was warned of (e.g. a rate beyond the machine)
            for warning in series.fetch_summary(url).get("warnings", []):
                typer.echo(f"warning: {warning}", err=True)

    run.__doc__ = doc
    app.command(name=name)(run)


for _name, _doc in [
    ("initialize", "Initialize the detector (state na -> idle)."),
    ("arm", "Arm the detector; prints the sequence id."),
    (
        "trigger",
        "Software trigger; in ints mode returns when the images are taken. Shows progress on a terminal, "
        "prints the series summary; exit 3 when images or packets were lost or dropped.",
    ),
    ("disarm", "Disarm: end the series, close files."),
    ("cancel", "Cancel: stop after the current image."),
    ("abort", "Abort the series immediately."),
    ("wait", "Block until the running series has ended; progress, summary and exit code as trigger."),
]:
    _command(_name, _doc)


@app.command("external-trigger")
def external_trigger(
    gate: Annotated[float | None, typer.Argument(help="exte: gate length in seconds (default: count_time)")] = None,
    url: UrlOption = DEFAULT_URL,
) -> None:
    """Fire the simulated detector's external trigger input: an edge (exts) or a gate (exte)."""
    body = None if gate is None else {"value": gate}
    client.show(client.request(url, "PUT", "/simulator/api/1.8.0/command/external_trigger", body))


@app.command()
def watch(
    last: Annotated[bool, typer.Option("--last", help="print the last series' summary at once")] = False,
    url: UrlOption = DEFAULT_URL,
) -> None:
    """Follow the series that runs now (or the next one) live until it ends, e.g. one started by someone else;
    print its summary; exit 3 when images or packets were lost or dropped."""
    series.watch(url, once=last)


@app.command()
def files(url: UrlOption = DEFAULT_URL) -> None:
    """List the FileWriter's files."""
    client.show(client.request(url, "GET", "/filewriter/api/1.8.0/status/files"))


app.add_typer(calibrate.app, name="calibrate")

if __name__ == "__main__":
    app()
