// Overview: model, live state, environment, the running series' progress, the last outcome, the interfaces.
import { V, fmt, request, rows, values } from "./api.js";

let previous = null; // {t, frames} for the frame rate

const DETECTOR_CONFIG = ["nimages", "ntrigger", "nframes_sum", "frame_time", "count_time", "trigger_mode"];
const INTERFACES = [
  "filewriter/config/mode", "filewriter/status/state", "stream/config/mode", "stream/status/state",
  "stream/status/dropped", "monitor/config/mode", "monitor/status/state", "analysis/config/mode",
  "analysis/status/state", "analysis/status/images_analysed", "analysis/status/decimated",
];

async function detectorStatus() {
  try {
    const all = await request("GET", `/detector/api/${V}/status/`);
    return Object.fromEntries(Object.entries(all).map(([k, d]) => [k, d.value]));
  } catch {
    return {}; // before initialize only status/state exists
  }
}

export async function refresh(shared) {
  const [status, v] = await Promise.all([
    detectorStatus(),
    values([...DETECTOR_CONFIG.map((k) => `detector/config/${k}`), ...INTERFACES]),
  ]);
  const c = (k) => v[`detector/config/${k}`];
  rows(document.getElementById("ov-detector"), [
    ["model", shared.model ?? "—"],
    ["state", shared.state, shared.state === "error" || shared.state === "na" ? "bad" : ""],
    ["high voltage", status["high_voltage/state"] ?? "—"],
    ["temperature", status.temperature === undefined ? "—" : `${fmt(status.temperature)} °C`],
    ["humidity", status.humidity === undefined ? "—" : `${fmt(status.humidity)} %`],
    ["DCU buffer free", status["builder/dcu_buffer_free"] === undefined ? "—" : `${fmt(status["builder/dcu_buffer_free"])} %`],
    ["errors", (status.error || []).join("; ") || "none", (status.error || []).length ? "bad" : ""],
  ]);

  const perImage = c("nframes_sum") || 1;
  const expected = (c("nimages") || 0) * (c("ntrigger") || 0);
  const framesSettled = (status["daq/frames_complete"] || 0) + (status["daq/frames_incomplete"] || 0) +
    (status["daq/frames_lost"] || 0);
  const settled = Math.floor(framesSettled / perImage);
  const now = performance.now();
  let rate = 0;
  if (previous && status["daq/frames_complete"] >= previous.frames && now > previous.t) {
    rate = ((status["daq/frames_complete"] - previous.frames) / perImage) / ((now - previous.t) / 1000);
  }
  previous = { t: now, frames: status["daq/frames_complete"] || 0 };
  const lost = (status["daq/packets_lost"] || 0) + (status["daq/frames_lost"] || 0) + (status["daq/frames_incomplete"] || 0);
  rows(document.getElementById("ov-series"), [
    ["series", status["daq/series_id"] ?? "—"],
    ["images settled / expected", `${settled} / ${expected}`],
    ["image rate", `${rate.toFixed(1)} /s`],
    ["packets lost", status["daq/packets_lost"] ?? "—", status["daq/packets_lost"] ? "bad" : ""],
    ["frames incomplete / lost", `${status["daq/frames_incomplete"] ?? "—"} / ${status["daq/frames_lost"] ?? "—"}`,
      (status["daq/frames_incomplete"] || status["daq/frames_lost"]) ? "bad" : ""],
    ["efficiency", status["daq/efficiency"] === undefined ? "—" : fmt(status["daq/efficiency"], 6)],
    ["timing", `${c("nimages") ?? "—"} images × ${c("ntrigger") ?? "—"} triggers, frame_time ${fmt(c("frame_time"))} s, ` +
      `count_time ${fmt(c("count_time"))} s, ${c("trigger_mode") ?? "—"}`],
  ]);
  document.getElementById("ov-progress-bar").style.width = `${expected ? Math.min(100, (100 * settled) / expected) : 0}%`;
  const outcome = document.getElementById("ov-outcome");
  if (!status["daq/series_id"]) outcome.textContent = "no series yet";
  else {
    const running = shared.state === "ready" || shared.state === "acquire";
    outcome.textContent = `${running ? "running" : "last"} series ${status["daq/series_id"]}: ${settled} of ${expected} images, ` +
      `${status["daq/packets_lost"]} packets lost, ${status["daq/frames_incomplete"]} incomplete and ` +
      `${status["daq/frames_lost"]} lost frames`;
    outcome.className = `outcome ${lost ? "bad" : "good"}`;
  }
  outcome.id = "ov-outcome";

  const i = (k) => v[k] ?? "—";
  rows(document.getElementById("ov-interfaces"), [
    ["FileWriter", `${i("filewriter/config/mode")} · ${i("filewriter/status/state")}`],
    ["Stream", `${i("stream/config/mode")} · ${i("stream/status/state")} · dropped ${i("stream/status/dropped")}`,
      v["stream/status/dropped"] ? "bad" : ""],
    ["Monitor", `${i("monitor/config/mode")} · ${i("monitor/status/state")}`],
    ["Analysis", `${i("analysis/config/mode")} · ${i("analysis/status/state")} · ${i("analysis/status/images_analysed")} analysed` +
      (v["analysis/status/decimated"] ? " (decimated)" : "")],
  ]);
}

export function show(shared) { previous = null; refresh(shared); }
