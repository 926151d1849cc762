"""Simulated detector modules as their own process: `python -m opendcu.simulator --detector eiger2-4m`."""

from __future__ import annotations

import argparse
import threading

from opendcu.geometry import get_model
from opendcu.lifecycle import announce_ready, child_process_setup, run_until
from opendcu.simulator.module import SimulatedModule
from opendcu.simulator.scenes import make_scene
from opendcu.simulator.scenes.base import parse_spec


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--detector", required=True)
    parser.add_argument("--modules", default="", help="comma-separated module ids (default: all)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument(
        "--scene",
        default="",
        help="the scene the modules see, as JSON (default: a flood), e.g. "
        '\'{"kind": "mx"}\'; the DCU sends only the experiment geometry of each series',
    )
    args = parser.parse_args(argv)
    stop = child_process_setup("simulator")
    model = get_model(args.detector)
    scene = parse_spec(args.scene)
    make_scene(model, 0, scene)  # a bad scene fails here, at start, not at the first arm
    ids = [int(x) for x in args.modules.split(",") if x] or list(range(model.n_modules))
    modules = [SimulatedModule(model, i, args.host, scene=scene) for i in ids]
    threads = [
        threading.Thread(target=m.serve, args=(stop,), name=f"module{m.module_id}", daemon=True) for m in modules
    ]
    for t in threads:
        t.start()
    announce_ready(
        {"modules": [{"module_id": m.module_id, "host": args.host, "config_port": m.config_port} for m in modules]}
    )

    def shutdown() -> None:
        for t in threads:
            t.join(timeout=2)
        for m in modules:
            m.close()

    run_until(stop, shutdown)


if __name__ == "__main__":
    main()
