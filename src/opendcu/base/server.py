"""`dcu serve`: the base system process. Starts the apps, then serves REST until Ctrl-C / SIGTERM."""

from __future__ import annotations

import logging
import signal
import threading

import uvicorn

from opendcu.base.app_manager import AppManager
from opendcu.base.rest.app import create_app
from opendcu.base.rest.auth import is_loopback
from opendcu.base.server_config import ServerConfig
from opendcu.lifecycle import StopSignal, kernel_cache_stamp

log = logging.getLogger("opendcu.base")


def serve(config: ServerConfig) -> int:
    """Run one DCU: simulated modules, app-calibration, app-detector and the REST gateway.

    The main thread only supervises: uvicorn runs in its own thread, and Ctrl-C / SIGTERM make the main
    thread stop uvicorn, then the apps in reverse start order (app-detector closes its files first).
    Returns the exit code: 0 after a requested stop, 1 if the REST server could not run.
    """
    logging.basicConfig(level=logging.INFO, format="%(asctime)s base[%(process)d] %(levelname)s %(name)s: %(message)s")
    stop = StopSignal()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, stop.set)
    config.data_dir.mkdir(parents=True, exist_ok=True)
    manager = AppManager(config)
    # the apps compile their numba kernels as they start (the analysis workers' ones in the background, after
    # ready; the last of them writes the stamp); later starts load them
    if not kernel_cache_stamp().exists():
        print("opendcu: compiling kernels, first start only (a few minutes)", flush=True)
    try:
        manager.start()
        if stop.is_set():
            return 0
        app = create_app(
            manager.detector_address,
            config.data_dir,
            restart=manager.restart_detector,
            calibration_address=manager.calibration_address,
            auth_token=config.auth_token,
            manager=manager,
        )
        if not config.auth_token and not is_loopback(config.host):
            log.warning(
                "REST, /data and WebDAV on %s are open to anyone who can reach this host: no "
                "authentication is set (dcu serve --auth-token, or $OPENDCU_AUTH_TOKEN)",
                config.host,
            )
        server = uvicorn.Server(uvicorn.Config(app, host=config.host, port=config.port, log_level="warning"))
        web = threading.Thread(target=server.run, name="rest", daemon=True)
        web.start()
        while not server.started and web.is_alive() and not stop.wait(0.05):
            pass
        if server.started:
            log.info(
                "opendcu %s: SIMPLON API on http://%s:%d, data in %s",
                config.detector,
                config.host,
                config.port,
                config.data_dir.resolve(),
            )
            print(f"opendcu ready: http://{config.host}:{config.port}/detector/api/1.8.0/status/state", flush=True)
            log.info("Web-UI on http://%s:%d/", config.host, config.port)
        while web.is_alive() and not stop.wait(0.5):
            pass
        server.should_exit = True
        web.join(timeout=10)
        return 0 if stop.is_set() else 1
    finally:
        log.info("stopping")
        manager.stop()
        log.info("stopped")
