"""The `calibration` module: SIMPLON-style keys and commands of app-calibration (served over the same Control
contract as app-detector's modules, so the REST gateway routes `/calibration/api/<v>/…` by ListModules).

    PUT command/start    {"value": {"procedure": "flatfield", "photon_energy": 8000, "precision": 0.01, ...}}
    PUT command/cancel   stop the running procedure (the active set stays as it was)
    PUT command/activate {"value": "<set id>"}     make a stored set (or "nominal") the active one
    PUT command/delete   {"value": "<set id>"}     delete a stored set that is not active
    PUT command/compare  {"value": {"a": "<id>", "b": "<id>", "photon_energy": e, "threshold_energy": t}}
    PUT command/describe {"value": "<set id>"}     the set's summary and provenance
    PUT config/pixel_mask, config/flatfield        a custom upload: kept as a set of its own (kind custom), active
    GET status/state | procedure | progress | message | error | result | active_set | sets | active_summary

A procedure needs the detector idle (else 400) and runs on its own thread: `start` answers at once.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

import numpy as np

from opendcu.app_calibration.detector_link import DetectorLink, DetectorRefused
from opendcu.app_calibration.procedures import PROCEDURES, ParameterError, ProcedureRun, Progress, validate
from opendcu.app_calibration.store import CalibrationStore, Flatfield, StoreError, UnknownSet, compare_sets, utc_now
from opendcu.simplon.errors import InvalidValue, ParameterNotFound, WrongState
from opendcu.simplon.parameters import Command, Parameter, StatusParameter, Subsystem

log = logging.getLogger(__name__)


class CalibrationManager:
    """Owns the store and the (at most one) running procedure."""

    def __init__(self, store: CalibrationStore, link_factory: Callable[[Callable[[], bool]], DetectorLink]):
        self.store = store
        self.link_factory = link_factory
        self.progress = Progress()
        self.run: ProcedureRun | None = None
        #: the energies app-detector asked for last (the flatfield GET config/flatfield shows)
        self.last_energies: tuple[float, float] = (8000.0, 4000.0)
        self._lock = threading.Lock()

    @property
    def running(self) -> bool:
        return self.progress.state == "running"

    # -- commands ---------------------------------------------------------------------------------------------------
    def start(self, argument: Any) -> str:
        if not isinstance(argument, dict) or not isinstance(argument.get("procedure"), str):
            raise InvalidValue(
                f'start takes {{"procedure": one of {", ".join(PROCEDURES)}, ...parameters}}, got {argument!r:.120}'
            )
        params = dict(argument)
        name = params.pop("procedure")
        try:
            plan = validate(name, params)
        except ParameterError as exc:
            raise InvalidValue(str(exc)) from None
        with self._lock:
            if self.running:
                raise WrongState(f"procedure {self.progress.procedure} is running; cancel it first")
            link = self.link_factory(lambda: False)
            try:
                state = link.state()
            except DetectorRefused as exc:
                raise WrongState(f"app-detector does not answer: {exc}") from None
            finally:
                link.close()
            if state != "idle":
                raise WrongState(f"the detector is {state}: a calibration needs it idle (initialized, no series)")
            self.progress = Progress(procedure=name, state="running", started=utc_now(), message="starting")
            self.run = ProcedureRun(plan, self.store, self.link_factory, self.progress, on_end=self.push_active)
            self.run.start()
        return name

    def push_active(self) -> None:
        """Show the active set on app-detector: its pixel mask and the flatfield of the present energies."""
        link = self.link_factory(lambda: False)
        try:
            if link.state() not in ("idle", "ready"):
                return  # na: loaded at initialize; during a series: at the next energy write / initialize
            mask, flatfield, _ = self.store.calibration(link.get("photon_energy"), link.get("threshold_energy"))
            link.set("pixel_mask", mask)
            link.set("flatfield", flatfield)
        except (DetectorRefused, StoreError) as exc:
            log.warning("could not show the active set on app-detector: %s", exc)
        finally:
            link.close()

    def cancel(self) -> None:
        if not self.running or self.run is None:
            raise WrongState("no calibration procedure is running")
        self.run.cancel()

    def activate(self, set_id: Any) -> None:
        self._check_idle()
        try:
            self.store.activate(self._set_id(set_id))
        except UnknownSet as exc:
            raise ParameterNotFound(str(set_id)) from exc
        self.push_active()

    def delete(self, set_id: Any) -> None:
        self._check_idle()
        try:
            self.store.delete(self._set_id(set_id))
        except UnknownSet as exc:
            raise ParameterNotFound(str(set_id)) from exc
        except StoreError as exc:
            raise WrongState(str(exc)) from None

    def compare(self, argument: Any) -> dict:
        if not isinstance(argument, dict) or "a" not in argument or "b" not in argument:
            raise InvalidValue(
                'compare takes {"a": "<set id>", "b": "<set id>"[, "photon_energy", "threshold_energy"]}'
            )
        try:
            a, b = (self.store.get(self._set_id(argument[k])) for k in ("a", "b"))
        except UnknownSet as exc:
            raise InvalidValue(str(exc)) from None
        e, t = argument.get("photon_energy"), argument.get("threshold_energy")
        if e is not None and t is None:
            t = e / 2
        return compare_sets(a, b, e, t)

    def describe(self, set_id: Any) -> dict:
        try:
            cal = self.store.get(self._set_id(set_id))
        except UnknownSet as exc:
            raise InvalidValue(str(exc)) from None
        return {**cal.summary(), "provenance": cal.provenance}

    def upload(self, key: str, value: np.ndarray) -> None:
        """A custom pixel mask or flatfield (at the detector's present energies) as a set of its own."""
        self._check_idle()
        active = self.store.active()
        if value.shape != active.pixel_mask.shape:
            raise InvalidValue(
                f"Parameter {key}: shape {list(value.shape)} != detector {list(active.pixel_mask.shape)}"
            )
        cal = active.derived(self.store.new_id("custom"), "custom")
        if key == "pixel_mask":
            cal.pixel_mask = value.astype(np.uint32)
            cal.provenance["pixel_mask"] = {"procedure": "upload", "date": utc_now()}
        else:
            link = self.link_factory(lambda: False)
            try:
                e, t = float(link.get("photon_energy")), float(link.get("threshold_energy"))
            finally:
                link.close()
            cal.flatfields = [
                f for f in cal.flatfields if abs(f.photon_energy - e) >= 1 or abs(f.threshold_energy - t) >= 1
            ]
            cal.flatfields.append(Flatfield(e, t, value.astype(np.float32), {"procedure": "upload", "date": utc_now()}))
            cal.flatfields.sort(key=lambda f: (f.photon_energy, f.threshold_energy))
            cal.provenance.setdefault("flatfield", []).append(
                {"procedure": "upload", "photon_energy": e, "threshold_energy": t, "date": utc_now()}
            )
        self.store.add(cal, activate=True)
        self.push_active()

    def _check_idle(self) -> None:
        if self.running:
            raise WrongState(f"procedure {self.progress.procedure} is running")

    @staticmethod
    def _set_id(value: Any) -> str:
        if not isinstance(value, str) or not value:
            raise InvalidValue(f"expected a calibration set id (string), got {value!r:.80}")
        return value


def build_calibration_subsystem(manager: CalibrationManager) -> Subsystem:
    sub = Subsystem("calibration")
    shape = lambda: tuple(manager.store.active().pixel_mask.shape)  # noqa: E731

    def upload(key: str):
        def on_change(_sub: Subsystem, _key: str, value: np.ndarray) -> list[str]:
            manager.upload(key, value)
            return []

        return on_change

    sub.add(
        Parameter(
            "pixel_mask", "uint[][]", np.zeros((0, 0), dtype=np.uint32), shape=shape, on_change=upload("pixel_mask")
        ),
        Parameter(
            "flatfield", "float[][]", np.zeros((0, 0), dtype=np.float32), shape=shape, on_change=upload("flatfield")
        ),
    )
    # what GET config/pixel_mask|flatfield answers: the active set's (flatfield at the detector's last energies)
    sub.config["pixel_mask"].compute = lambda _s: manager.store.active().pixel_mask
    sub.config["flatfield"].compute = lambda _s: _active_flatfield(manager)
    p = lambda: manager.progress  # noqa: E731
    sub.add_status(
        StatusParameter(
            "state", "string", lambda: p().state, allowed_values=["idle", "running", "done", "failed", "cancelled"]
        ),
        StatusParameter("procedure", "string", lambda: p().procedure),
        StatusParameter("progress", "float", lambda: round(p().fraction, 4)),
        StatusParameter("message", "string", lambda: p().message),
        StatusParameter("error", "string", lambda: p().error),
        StatusParameter("result", "string", lambda: p().result),
        StatusParameter("series", "uint", lambda: p().series),
        StatusParameter("active_set", "string", lambda: manager.store.active_id),
        StatusParameter("sets", "string[]", lambda: ["nominal", *manager.store.set_ids()]),
        StatusParameter("procedures", "string[]", lambda: list(PROCEDURES)),
        StatusParameter("active_summary", "json", lambda: manager.store.active().summary(), listed=False),
    )
    sub.add_command(
        Command("start", manager.start),
        Command("cancel", lambda _a: manager.cancel()),
        Command("activate", manager.activate),
        Command("delete", manager.delete),
        Command("compare", manager.compare),
        Command("describe", manager.describe),
    )
    return sub


def _active_flatfield(manager: CalibrationManager) -> np.ndarray:
    cal = manager.store.active()
    try:
        return cal.flatfield_for(*manager.last_energies)[0]
    except StoreError:
        return np.ones(cal.pixel_mask.shape, dtype=np.float32)
