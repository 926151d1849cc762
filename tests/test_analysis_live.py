"""Live analysis: the ImageMux interface with real worker processes, and end to end through `dcu serve`."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from pathlib import Path

import cbor2
import h5py
import hdf5plugin  # noqa: F401
import numpy as np
import pytest
import zmq
from analysis_support import LYSOZYME, mx_experiment
from conftest import start_dcu

from opendcu.analysis.crystal import UnitCell, misorientation_deg, reduce_basis
from opendcu.app_detector.imagemux.mux import CompressedImage
from opendcu.app_detector.interfaces.analysis import ANNOTATION_KEY, SUMMARY_KEY, AnalysisInterface
from opendcu.app_detector.interfaces.stream.decoder import decode_v2
from opendcu.app_detector.series import Series, SeriesSettings
from opendcu.codecs import get_codec
from opendcu.simulator.scenes import make_scene
from opendcu.testing.simulate import poisson_image

API = "/analysis/api/1.8.0"
#: how long a worker may take (started, kernels loaded, maps built, image analysed) on a loaded 2-core machine;
#: the waits poll, so a generous budget costs nothing when things go well
WORKER_BUDGET_S = 300


def make_series(experiment, series_id: int, nimages: int, **config) -> Series:
    bx, by = experiment.geometry.beam_center_px
    settings = SeriesSettings(
        series_id=series_id,
        detector=experiment.model.name,
        nimages_total=nimages,
        bit_depth_image=32,
        compression="bslz4",
        pixel_mask_applied=True,
        mask_to_zero=False,
    )
    cfg = {
        "beam_center_x": bx,
        "beam_center_y": by,
        "detector_distance": experiment.geometry.dist,
        "wavelength": experiment.geometry.wavelength_a,
        "x_pixel_size": 75e-6,
        "omega_start": 0.0,
        "omega_increment": 0.1,
        **config,
    }
    return Series(
        settings=settings,
        nimages=nimages,
        ntrigger=1,
        trigger_mode="ints",
        count_time=0.1,
        frame_time=0.1,
        detector_config=cfg,
    )


@pytest.fixture(scope="module")
def compressed_frames():
    """Ten bslz4 chunks of a simulated rotation (as the pipeline would publish them) and the experiment."""
    # mosaicity 0.2 deg: with the Kabsch rocking width (issue #11) a 0.1 deg crystal puts ~230 findable spots on a
    # 0.1 deg image here, fewer than the > 300 the checks below want
    experiment = mx_experiment(seed=3, distance=0.08, d_min=2.4, mosaicity_deg=0.2)
    rng = np.random.default_rng(1)
    codec = get_codec("bslz4")
    return experiment, [codec.encode(poisson_image(experiment.scene, experiment.model, i + 1, rng)) for i in range(10)]


def offer(interface, experiment, series_id, image_id, chunk, released: list) -> CompressedImage:
    image = CompressedImage(
        series_id=series_id,
        image_id=image_id,
        data=chunk,
        dtype=np.dtype(np.uint32),
        shape=experiment.model.shape,
        compression="bslz4",
        packets_expected=1,
        packets_received=1,
        _on_free=lambda: released.append(image_id),
    )
    image.annotations = {}  # issue #6 adds this field to CompressedImage; the stream sends its entries
    interface.offer(image)
    return image


def test_interface_analyses_releases_annotates_and_contributes(compressed_frames) -> None:
    experiment, chunks = compressed_frames
    interface = AnalysisInterface(experiment.model)
    try:
        sub = interface.subsystem
        sub.set("mode", "enabled")
        sub.set("unit_cell", list(LYSOZYME))
        series = make_series(experiment, 1, len(chunks))
        interface.start_series(series)
        released: list[int] = []
        annotated: dict[int, dict] = {}
        for image_id, chunk in enumerate(chunks):
            image = offer(interface, experiment, 1, image_id, chunk, released)
            for record in image.annotations.get(ANNOTATION_KEY, []):
                annotated[record["image_id"]] = record
            # one image at a time, as a slow detector: every image is analysed
            assert interface.wait_idle(1, timeout=WORKER_BUDGET_S)
        interface.end_series(series, aborted=False)
        assert released == list(range(10))  # every image handed back at once, analysed or not
        results = interface.store.series(1)
        assert results.finished and results.images_received == 10 and results.images_analysed == 10
        for image_id, record in results.records.items():
            truth = experiment.scene.truth(image_id + 1)
            assert record["n_spots"] > 300 and record["is_hit"]
            assert abs(record["d_min"] / 2.4 - 1) < 0.1
            assert record["indexed"] and record["fraction_indexed"] > 0.9
            assert misorientation_deg(np.reshape(record["ub_matrix"], (3, 3)), truth.A) < 0.5
            assert record["phi_deg"] == pytest.approx((image_id + 0.5) * 0.1)
            assert record["latency_ms"] > record["analysis_ms"] > 0
        # stream annotations: each finished result rides along exactly once, in a later image's message
        assert set(annotated) == set(range(9))  # the last result has no later image to ride on ...
        assert [r["image_id"] for r in series.end_annotations[ANNOTATION_KEY]] == [9]  # ... it ends the series
        assert series.end_annotations[SUMMARY_KEY] == {**results.summary(), "complete": True}
        for image_id, record in annotated.items():
            assert record["n_spots"] == results.records[image_id]["n_spots"]
            assert len(record["spots"]) == 3 * min(256, record["n_spots"])
        # NXmx arrays: one row per image of the series, fill values where not analysed
        datasets = interface.master_datasets(series)
        analysed = datasets["/entry/MX/imageAnalysed"].astype(bool)
        assert analysed.sum() == results.images_analysed and len(analysed) == 10
        n_peaks = datasets["/entry/MX/nPeaks"]
        for image_id, record in results.records.items():
            assert n_peaks[image_id] == min(256, record["n_spots"])
            assert datasets["/entry/MX/peakXPosRaw"][image_id, 0] == pytest.approx(record["spots"]["x"][0])
            assert datasets["/entry/MX/dMin"][image_id] == pytest.approx(record["d_min"], rel=1e-6)
        assert np.isnan(datasets["/entry/MX/dMin"][~analysed]).all()
        assert datasets["/entry/azint/image"].shape == (10, 1000)
        assert np.isfinite(datasets["/entry/azint/image"][analysed]).sum(axis=1).min() > 900
    finally:
        interface.close()


def test_a_series_ends_without_waiting_for_an_analysis_that_is_behind(compressed_frames, monkeypatch) -> None:
    """The end of a series (and so the stream's end message) waits at most END_WAIT_S for analysis: the summary
    it leaves says what was there and that it is incomplete; the late result still reaches the store (REST)."""
    from opendcu.app_detector.interfaces.analysis import interface as analysis_interface

    monkeypatch.setattr(analysis_interface, "END_WAIT_S", 0.0)
    experiment, chunks = compressed_frames
    interface = AnalysisInterface(experiment.model)
    try:
        interface.subsystem.set("mode", "enabled")
        series = make_series(experiment, 1, 1)
        interface.start_series(series)
        offer(interface, experiment, 1, 0, chunks[0], [])
        interface.end_series(series, aborted=False)  # the image is still being analysed
        summary = series.end_annotations[SUMMARY_KEY]
        assert summary["complete"] is False and summary["images_analysed"] == 0
        assert summary["images_received"] == 1 and summary["finished"]
        assert interface.wait_idle(1, timeout=WORKER_BUDGET_S)
        assert interface.store.series(1).images_analysed == 1
    finally:
        interface.close()


def test_binned_8_bit_float_images_are_analysed_in_image_pixels(compressed_frames) -> None:
    """2x2 binning and the 8-bit float counter: the workers decode the codes to counts, and the geometry (beam
    centre / 2, pixels twice the size, as the series' config snapshot gives them) indexes the crystal."""
    from opendcu.codecs.binning import Bin2x2
    from opendcu.codecs.float8 import Float8E3M5

    experiment, chunks = compressed_frames
    frame = get_codec("bslz4").decode(chunks[0], np.dtype(np.uint32), experiment.model.shape)
    codes = Float8E3M5().encode(Bin2x2().encode(frame))
    h, w = codes.shape
    mask = experiment.layout.default_pixel_mask().reshape(h, 2, w, 2)
    mask = np.bitwise_or.reduce(np.bitwise_or.reduce(mask, axis=3), axis=1)
    bx, by = experiment.geometry.beam_center_px
    series = make_series(
        experiment, 1, 1, beam_center_x=bx / 2, beam_center_y=by / 2, x_pixel_size=150e-6, y_pixel_size=150e-6
    )
    series.settings = SeriesSettings(
        series_id=1,
        detector=experiment.model.name,
        nimages_total=1,
        bit_depth_image=8,
        compression="bslz4",
        pixel_mask_applied=True,
        mask_to_zero=False,
        binning_2x2_applied=True,
        float8_encoding_applied=True,
        image_shape=(h, w),
    )
    series.pixel_mask = mask
    interface = AnalysisInterface(experiment.model)
    try:
        interface.subsystem.set("mode", "enabled")
        interface.subsystem.set("unit_cell", list(LYSOZYME))
        interface.start_series(series)
        image = CompressedImage(
            series_id=1,
            image_id=0,
            data=get_codec("bslz4").encode(codes),
            dtype=np.dtype(np.uint8),
            shape=(h, w),
            compression="bslz4",
            packets_expected=1,
            packets_received=1,
        )
        interface.offer(image)
        assert interface.wait_idle(1, timeout=WORKER_BUDGET_S)
        interface.end_series(series, aborted=False)
        assert not interface.errors
        record = interface.store.series(1).records[0]
        assert record["n_spots"] > 100 and record["is_hit"] and abs(record["d_min"] / 2.4 - 1) < 0.15
        assert record["indexed"]
        assert misorientation_deg(np.reshape(record["ub_matrix"], (3, 3)), experiment.scene.truth(1).A) < 0.5
    finally:
        interface.close()


def test_decimates_when_images_come_faster_than_analysis(compressed_frames) -> None:
    """Offered back to back, images are never queued up: most are skipped (released at once), counted, and the
    results say the stream was decimated; the configured stride applies first."""
    experiment, chunks = compressed_frames
    interface = AnalysisInterface(experiment.model)
    try:
        interface.subsystem.set("mode", "enabled")
        interface.subsystem.set("indexing", False)
        series = make_series(experiment, 7, 60)
        interface.start_series(series)
        released: list[int] = []
        for image_id in range(60):
            offer(interface, experiment, 7, image_id, chunks[image_id % 10], released)
        assert sorted(released) == list(range(60))
        # the few images that got a slot finish (a just-started worker can take longer than end_series'
        # END_WAIT_S on a loaded machine; that bound has its own test above)
        assert interface.wait_idle(7, timeout=WORKER_BUDGET_S)
        interface.end_series(series, aborted=False)
        results = interface.store.series(7)
        assert results.images_received == 60
        assert results.images_analysed + results.images_skipped == 60
        assert results.images_skipped > 30 and results.images_analysed >= 1
        assert all(r["decimated"] for r in results.records.values() if r["images_skipped"] > 0)
        assert interface.status("decimated") is True

        interface.subsystem.set("stride", 3)  # changes apply from the next series
        series = make_series(experiment, 8, 9)
        interface.start_series(series)
        for image_id in range(9):
            offer(interface, experiment, 8, image_id, chunks[image_id], released)
            assert interface.wait_idle(8, timeout=WORKER_BUDGET_S)
        interface.end_series(series, aborted=False)
        results = interface.store.series(8)
        assert results.images_strided == 6 and set(results.records) <= {0, 3, 6}
    finally:
        interface.close()


def test_annotations_are_ignored_safely_by_a_dectris_stream_v2_decoder(
    compressed_frames, golden_dir: Path, shared_dir: Path, clients_python: Path, tmp_path: Path
) -> None:
    """A real DECTRIS image message with our annotation appended as an extra key still decodes with the
    team's DECTRIS-style consumer (clients/s2decode.py, in the external clients venv) to the same images."""
    from opendcu.analysis.frame import AnalysisSettings, FrameAnalyzer
    from opendcu.app_detector.interfaces.analysis.worker import result_record

    experiment, chunks = compressed_frames
    frame = get_codec("bslz4").decode(chunks[0], np.dtype(np.uint32), experiment.model.shape)
    result = FrameAnalyzer(experiment.geometry, experiment.mask, AnalysisSettings()).analyse(frame, 0xFFFFFFFF)
    record = {
        **result_record(result, 1, 0, 0.05, 256),
        "latency_ms": 12.5,
        "images_received": 1,
        "images_analysed": 1,
        "decimated": False,
    }
    annotation = [AnalysisInterface._compact(record)]
    original = golden_dir / "stream_v2" / "r500k_bm_bslz4_16bit" / "000002.cbor"
    raw = original.read_bytes()
    assert raw[:3] == b"\xd9\xd9\xf7"
    message = cbor2.loads(raw)  # array tags stay CBORTag objects and re-encode unchanged
    message = message.value if isinstance(message, cbor2.CBORTag) else message  # cbor2 >= 6 drops tag 55799

    def plain(value):
        if isinstance(value, Mapping):
            return {k: plain(v) for k, v in value.items()}
        if isinstance(value, cbor2.CBORTag):
            return cbor2.CBORTag(value.tag, plain(value.value))
        return [plain(v) for v in value] if isinstance(value, (list, tuple)) else value

    annotated = tmp_path / "annotated.cbor"
    annotated.write_bytes(cbor2.dumps(cbor2.CBORTag(55799, {**plain(message), ANNOTATION_KEY: annotation})))
    decoder = shared_dir / "clients" / "s2decode.py"
    outputs = [
        subprocess.run(
            [str(clients_python), str(decoder), str(path)], capture_output=True, text=True, timeout=120, check=True
        ).stdout.splitlines()[1:]
        for path in (original, annotated)
    ]
    assert outputs[0] == outputs[1] and len(outputs[0]) >= 2  # header + per-channel sums, identical
    back = cbor2.loads(annotated.read_bytes())
    back = (back.value if isinstance(back, cbor2.CBORTag) else back)[ANNOTATION_KEY][0]
    assert back["n_spots"] == record["n_spots"] > 100 and len(back["spots"]) == 3 * min(256, record["n_spots"])


def test_cell_search_then_indexing_without_a_configured_cell() -> None:
    """No unit cell: the worker finds the cell from the first images of the rotation, then indexes with it."""
    experiment = mx_experiment(
        seed=12, distance=0.08, d_min=2.4, omega_increment=0.5, cell=[52.3, 61.7, 97.4, 90.0, 105.2, 90.0]
    )
    codec = get_codec("bslz4")
    rng = np.random.default_rng(2)
    interface = AnalysisInterface(experiment.model)
    try:
        interface.subsystem.set("mode", "enabled")
        series = make_series(experiment, 4, 16, omega_increment=0.5)
        interface.start_series(series)
        released: list[int] = []
        for image_id in range(16):
            chunk = codec.encode(poisson_image(experiment.scene, experiment.model, image_id + 1, rng))
            offer(interface, experiment, 4, image_id, chunk, released)
            assert interface.wait_idle(4, timeout=WORKER_BUDGET_S)
        interface.end_series(series, aborted=False)
        results = interface.store.series(4)
        assert results.found_cell is not None
        truth_cell = UnitCell.from_basis(reduce_basis(experiment.scene.cell.real_basis))
        found = UnitCell.from_sequence(results.found_cell)
        assert np.allclose(found.lengths, truth_cell.lengths, rtol=0.01)
        assert interface.subsystem.describe("status", "found_cell").value == results.found_cell
        indexed = [r for r in results.records.values() if r["indexed"]]
        assert len(indexed) >= 4 and all(r["image_id"] >= 9 for r in indexed)
        for r in indexed:
            error = misorientation_deg(np.reshape(r["ub_matrix"], (3, 3)), experiment.scene.truth(r["image_number"]).A)
            assert error is not None and error < 0.5
    finally:
        interface.close()


def test_a_process_that_stops_its_workers_before_they_read_their_inbox_exits_at_once(tmp_path: Path) -> None:
    """Closed right after warm_up(), the worker is terminated before it read its warm-up setup (larger than a
    pipe's buffer): the process that owns its inbox must still exit, not wait forever for the queue's feeder
    thread at exit (app-detector stopped right after start was killed after 20 s)."""
    script = (
        "from opendcu.geometry import get_model\n"
        "from opendcu.app_detector.interfaces.analysis import AnalysisInterface\n"
        "interface = AnalysisInterface(get_model('eiger2-500k'))\n"
        "interface.warm_up()\n"
        "assert all(w.process.is_alive() for w in interface._workers)\n"
        "interface.close()\n"
        "print('closed', flush=True)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and "closed" in done.stdout, done.stderr[-3000:]


def test_workers_warm_up_before_the_first_arm(compressed_frames) -> None:
    experiment, chunks = compressed_frames
    interface = AnalysisInterface(experiment.model)
    try:
        interface.warm_up()  # what app-detector does at start
        deadline = time.monotonic() + WORKER_BUDGET_S
        while interface.workers_warm() < 1 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert interface.workers_warm() == 1 and interface.errors == []
        warm_pid = interface._workers[0].process.pid
        interface.subsystem.set("mode", "enabled")
        series = make_series(experiment, 3, 1)
        interface.start_series(series)  # the same worker takes the series: no new process
        assert interface._workers[0].process.pid == warm_pid
        released: list[int] = []
        offer(interface, experiment, 3, 0, chunks[0], released)
        assert interface.wait_idle(3, timeout=WORKER_BUDGET_S)
        interface.end_series(series, aborted=False)
        assert released == [0] and interface.store.series(3).images_analysed == 1 and interface.errors == []
    finally:
        interface.close()


def test_a_killed_worker_is_reported_and_replaced(compressed_frames) -> None:
    import os
    import signal

    experiment, chunks = compressed_frames
    interface = AnalysisInterface(experiment.model)
    try:
        interface.subsystem.set("mode", "enabled")
        interface.subsystem.set("indexing", False)
        series = make_series(experiment, 5, 4)
        interface.start_series(series)
        released: list[int] = []
        offer(interface, experiment, 5, 0, chunks[0], released)
        assert interface.wait_idle(5, timeout=WORKER_BUDGET_S)
        os.kill(interface._workers[0].process.pid, signal.SIGKILL)
        interface._workers[0].process.join(WORKER_BUDGET_S)
        for image_id in range(1, 4):
            offer(interface, experiment, 5, image_id, chunks[image_id], released)
        interface._check_workers()
        interface.end_series(series, aborted=False)
        assert released == [0, 1, 2, 3] and interface.store.series(5).images_analysed == 1
        results = interface.store.series(5)  # it held no image when it died: none lost, the rest skipped
        assert (results.images_received, results.images_skipped, results.images_lost) == (4, 3, 0)
        assert interface.state == "error" and "died (exit code -9) holding 0 images" in interface.errors[-1]
        series = make_series(experiment, 6, 1)  # the next arm starts a new worker
        interface.start_series(series)
        offer(interface, experiment, 6, 0, chunks[0], released)
        assert interface.wait_idle(6, timeout=WORKER_BUDGET_S)
        interface.end_series(series, aborted=False)
        assert interface.store.series(6).images_analysed == 1 and interface.state == "ready"
    finally:
        interface.close()


def test_bad_geometry_is_reported_and_images_still_flow(compressed_frames) -> None:
    experiment, chunks = compressed_frames
    interface = AnalysisInterface(experiment.model)
    try:
        interface.subsystem.set("mode", "enabled")
        series = make_series(experiment, 2, 3, detector_distance=0.0)  # no detector can be there
        interface.start_series(series)
        released: list[int] = []
        for image_id in range(3):
            offer(interface, experiment, 2, image_id, chunks[image_id], released)
        interface.end_series(series, aborted=False)
        assert released == [0, 1, 2]
        assert interface.state == "error" and "distance" in interface.errors[0]
        interface.clear()
        assert interface.state == "ready"
    finally:
        interface.close()


# -- end to end --------------------------------------------------------------------------------------------------------
SCENE = {"kind": "mx", "d_min": 2.4, "cell": list(LYSOZYME)}


def test_live_analysis_through_dcu_serve(tmp_path: Path, request: pytest.FixtureRequest) -> None:
    """A simulated EIGER2 1M with a crystal: results over REST and SSE agree with the simulator's truth, ride
    along in the stream v2 image messages (the last ones and the series summary in the end message) and land in
    the NXmx master; the settings change between series, bad settings get 400/404, and the data files and the
    stream keep every image."""
    server = start_dcu(tmp_path, detector="eiger2-1m", extra=["--scene", json.dumps(SCENE)])
    try:
        with server.client() as http:
            assert http.put("/detector/api/1.8.0/command/initialize").status_code == 200
            detector = {
                "nimages": 10,
                "frame_time": 0.2,
                "count_time": 0.1999,
                "omega_increment": 0.1,
                "detector_distance": 0.08,
                "wavelength": 1.0,
                "beam_center_x": 514.37,
                "beam_center_y": 530.79,
            }
            for key, value in detector.items():
                assert http.put(f"/detector/api/1.8.0/config/{key}", json={"value": value}).status_code == 200
            assert http.put("/filewriter/api/1.8.0/config/mode", json={"value": "enabled"}).status_code == 200
            for key, value in {"mode": "enabled", "format": "cbor"}.items():
                assert http.put(f"/stream/api/1.8.0/config/{key}", json={"value": value}).status_code == 200
            stream = zmq.Context.instance().socket(zmq.PULL)
            stream.setsockopt(zmq.RCVTIMEO, 30_000)
            stream.setsockopt(zmq.LINGER, 0)
            stream.connect(f"tcp://127.0.0.1:{server.stream_v2_port}")
            for key, value in {"mode": "enabled", "unit_cell": list(LYSOZYME)}.items():
                assert http.put(f"{API}/config/{key}", json={"value": value}).status_code == 200
            assert http.get(f"{API}/config/unit_cell").json()["value"] == list(LYSOZYME)
            assert "sigma_strong" in http.get(f"{API}/config/keys").json()
            # bad settings: clear errors, the right codes
            assert http.put(f"{API}/config/unit_cell", json={"value": [1, 2]}).status_code == 400
            assert http.put(f"{API}/config/radial_unit", json={"value": "furlong"}).status_code == 400
            assert http.put(f"{API}/config/sigma_strong", json={"value": "x"}).status_code == 400
            assert http.put(f"{API}/config/bogus", json={"value": 1}).status_code == 404
            assert http.get(f"{API}/results?start=x").status_code == 400
            assert http.get(f"{API}/results").status_code == 404  # nothing analysed yet
            assert http.get(f"{API}/events").status_code == 400  # an endless stream only when asked for one

            events: list[tuple[str, dict]] = []
            sse_ready = threading.Event()

            def listen() -> None:
                headers = {"Accept": "text/event-stream"}
                with server.client(timeout=60) as sse, sse.stream("GET", f"{API}/events", headers=headers) as stream:
                    kind = None
                    for line in stream.iter_lines():
                        sse_ready.set()
                        if line.startswith("event: "):
                            kind = line[7:]
                        elif line.startswith("data: "):
                            events.append((kind, json.loads(line[6:])))
                            if kind == "series_end":
                                return

            listener = threading.Thread(target=listen, daemon=True)
            listener.start()
            assert sse_ready.wait(WORKER_BUDGET_S)
            series_id = http.put("/detector/api/1.8.0/command/arm").json()["sequence id"]
            # the workers build their maps and compile their kernels at arm (a beamline arms before opening the
            # shutter); images before that would be skipped, so wait for them as a client would
            deadline = time.monotonic() + 180
            while http.get(f"{API}/status/workers_ready").json()["value"] < 1 and time.monotonic() < deadline:
                time.sleep(0.2)
            assert http.put("/detector/api/1.8.0/command/trigger").status_code == 200
            listener.join(WORKER_BUDGET_S)
            assert not listener.is_alive(), "no series_end event"

            reply = http.get(f"{API}/results?spots=true").json()
            summary, results = reply["summary"], reply["results"]
            assert summary["series_id"] == series_id and summary["finished"]
            # the machine is shared: how many images the low-priority worker gets to varies; the two that reach
            # its slots first are always analysed
            assert summary["images_received"] == 10 and summary["images_analysed"] >= 2
            assert summary["images_analysed"] + summary["images_skipped"] == 10
            # the scene the simulated modules rendered (the DCU seeds it with the series id)
            scene = make_scene(
                "eiger2-1m",
                series_id,
                {
                    **SCENE,
                    "experiment": {
                        "wavelength_a": 1.0,
                        "distance_m": 0.08,
                        "beam_center_x_px": 514.37,
                        "beam_center_y_px": 530.79,
                        "count_time_s": 0.1999,
                        "omega_increment_deg": 0.1,
                    },
                },
            )
            for r in results:
                truth = scene.truth(r["image_number"])
                assert r["is_hit"] and abs(r["d_min"] / 2.4 - 1) < 0.1
                assert r["indexed"] or r["indexing_skipped"]
                if r["indexed"]:
                    assert misorientation_deg(np.reshape(r["ub_matrix"], (3, 3)), truth.A) < 0.5
                assert len(r["spots"]["x"]) == min(256, r["n_spots"])
                assert r["latency_ms"] > 0
            one = http.get(f"{API}/results/{results[0]['image_id']}").json()
            assert len(one["profile"]["radial"]) == 1000 and one["profile"]["unit"] == "q_A^-1"
            assert one["n_spots"] == results[0]["n_spots"]
            kinds = [k for k, _ in events]
            assert kinds[0] == "series_start" and kinds[-1] == "series_end"
            assert sorted(e["image_id"] for k, e in events if k == "result") == [r["image_id"] for r in results]
            assert http.get(f"{API}/status/images_analysed").json()["value"] == summary["images_analysed"]
            assert http.get(f"{API}/summary").json()["hit_rate"] == 1.0
            # stream v2: results ride along in later image messages under ANNOTATION_KEY, each once
            messages = []
            while not messages or messages[-1]["type"] != "end":
                raw = stream.recv()
                messages.append(decode_v2(raw))
            stream.close()
            images = [m for m in messages if m["type"] == "image"]
            assert len(images) == 10  # every image streamed, analysed or not
            by_id = {r["image_id"]: r for r in results}
            annotated = [a for m in messages for a in m.get(ANNOTATION_KEY, [])]
            # each result exactly once: in a later image message, or (the last ones) in the end message
            assert sorted(a["image_id"] for a in annotated) == sorted(by_id)
            for a in annotated:
                assert a["n_spots"] == by_id[a["image_id"]]["n_spots"] and a["series_id"] == series_id
            # the end message: the standard keys first, then the series summary as REST serves it
            end = cbor2.loads(raw)
            end = dict(end.value if isinstance(end, cbor2.CBORTag) else end)
            assert list(end)[:3] == ["type", "series_id", "series_unique_id"]
            assert set(list(end)[3:]) <= {ANNOTATION_KEY, SUMMARY_KEY} and SUMMARY_KEY in end
            end_summary = dict(end[SUMMARY_KEY])
            assert end_summary.pop("complete") is True  # the test's analysis was not behind
            rest_summary = http.get(f"{API}/summary?series={series_id}").json()
            assert end_summary == rest_summary and rest_summary["images_analysed"] == len(results)
            assert rest_summary["hits"] == len(results) and rest_summary["max_n_spots"] == max(
                r["n_spots"] for r in results
            )
            assert rest_summary["best_d_min"] == min(r["d_min"] for r in results)
            clients_python = request.getfixturevalue("clients_python")  # the DECTRIS-recipe decoder takes it
            (tmp_path / "end.cbor").write_bytes(raw)
            decoded = subprocess.run(
                [
                    str(clients_python),
                    str(request.getfixturevalue("shared_dir") / "clients" / "s2decode.py"),
                    str(tmp_path / "end.cbor"),
                ],
                capture_output=True,
                text=True,
                timeout=120,
                check=True,
            ).stdout
            assert f"type=end series_id={series_id}" in decoded
            # the NXmx master: one row per image, the analysed ones filled in
            with h5py.File(server.data_dir / f"series_{series_id}_master.h5", "r") as master:
                analysed = master["/entry/MX/imageAnalysed"][()].astype(bool)
                n_peaks = master["/entry/MX/nPeaks"][()]
                assert analysed.shape == (10,) and analysed.sum() == summary["images_analysed"]
                assert all(n_peaks[i] == min(256, r["n_spots"]) for i, r in by_id.items())
                assert master["/entry/azint/image"].shape == (10, 1000)
                assert master["/entry/data/data_000001"].shape[0] == 10  # and every image is in the data file

            # settings change between series: a cake and a stride
            assert http.put(f"{API}/config/azimuthal_bins", json={"value": 36}).status_code == 200
            assert http.put(f"{API}/config/stride", json={"value": 4}).status_code == 200
            assert http.put("/detector/api/1.8.0/config/nimages", json={"value": 8}).status_code == 200
            assert http.put("/detector/api/1.8.0/config/frame_time", json={"value": 0.1}).status_code == 200
            second = http.put("/detector/api/1.8.0/command/arm").json()["sequence id"]
            deadline = time.monotonic() + 180  # the new settings (a cake) mean new maps: wait for them as above
            while http.get(f"{API}/status/workers_ready").json()["value"] < 1 and time.monotonic() < deadline:
                time.sleep(0.2)
            http.put("/detector/api/1.8.0/command/trigger")
            reply = http.get(f"{API}/results?series={second}&profile=true").json()
            assert reply["summary"]["images_strided"] == 6
            assert {r["image_id"] for r in reply["results"]} <= {0, 4}
            assert all(len(r["profile"]["cake"]) == 36 * 1000 for r in reply["results"])
            assert http.get(f"{API}/results?series={series_id}").json()["summary"]["series_id"] == series_id
            assert http.get(f"{API}/results/5?series={second}").status_code == 404
    finally:
        server.stop()
