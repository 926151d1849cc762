"""The module backend seam: ModuleDriver is a ModuleBackend, and its five calls drive real simulated modules
(config packets over UDP, data packets caught on a plain socket)."""

from __future__ import annotations

import socket
import threading

from opendcu.geometry import get_model
from opendcu.hardware.backend import ModuleBackend
from opendcu.hardware.config_packet import TriggerMode
from opendcu.hardware.module_driver import ModuleAddress, ModuleDriver
from opendcu.hardware.udp_packet import HEADER_SIZE, PacketLayout, unpack_headers
from opendcu.simulator.module import SimulatedModule


def test_the_udp_driver_is_a_module_backend_that_drives_simulated_modules():
    model = get_model("eiger2-1m")
    modules = [SimulatedModule(model, i) for i in range(2)]
    stop = threading.Event()
    for m in modules:
        threading.Thread(target=m.serve, args=(stop,), daemon=True).start()
    # a third address where nothing answers: status says so
    silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    silent.bind(("127.0.0.1", 0))
    data = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    data.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 << 20)
    data.bind(("127.0.0.1", 0))
    data.settimeout(30)
    addresses = [ModuleAddress(m.module_id, "127.0.0.1", m.config_port) for m in modules]
    driver = ModuleDriver([*addresses, ModuleAddress(99, "127.0.0.1", silent.getsockname()[1])])
    try:
        assert isinstance(driver, ModuleBackend)
        ids = [m.module_id for m in modules]
        assert driver.module_ids == [*ids, 99]
        status = driver.status()
        assert [status[i] for i in ids] == [None, None] and "did not acknowledge STATUS" in status[99]

        # one module armed and triggered: exactly its packets of two images arrive, nothing of the other
        driver.configure(
            [ids[1]],
            {ids[1]: data.getsockname()},
            count_time=0.004,
            frame_time=0.005,
            nimages=2,
            ntrigger=1,
            trigger_mode=TriggerMode.INTS,
            series_id=4,
            seed=1,
            test_pattern=1,
        )
        driver.trigger([ids[1]])
        npackets = PacketLayout.for_module(model.module, 8192).npackets
        headers = unpack_headers(b"".join(data.recv(65536)[:HEADER_SIZE] for _ in range(2 * npackets)), 2 * npackets)
        assert set(headers["module_id"]) == {ids[1]} and set(headers["frame_number"]) == {1, 2}
        assert set(headers["series_id"]) == {4}
        assert driver.stop([ids[1]]) == 2  # the images it sent
    finally:
        stop.set()
        driver.close()
        for m in modules:
            m.close()
        silent.close()
        data.close()
