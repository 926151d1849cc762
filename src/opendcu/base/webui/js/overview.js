// Overview: model, live state, environment, the running series' progress, the last outcome, the interfaces.
import { V, fmt, request, rows, valueOf, values } from "./api.js";
import { LUT } from "./colormap.js";

let previous = null; // {t, frames} for the frame rate
let thumb = null; // the newest monitor image shown small: {series, image, W, H, bin}
const THUMB_SIZE = 360;

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

  const expected = (c("nimages") || 0) * (c("ntrigger") || 0);
  // the DAQ counts images (auto-summation's sub-frames are summed before): complete, incomplete or lost
  const settled = (status["daq/frames_complete"] || 0) + (status["daq/frames_incomplete"] || 0) +
    (status["daq/frames_lost"] || 0);
  const now = performance.now();
  let rate = 0;
  if (previous && status["daq/frames_complete"] >= previous.frames && now > previous.t) {
    rate = (status["daq/frames_complete"] - previous.frames) / ((now - previous.t) / 1000);
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
  const summary = await valueOf("detector", "status", "series"); // app-detector's series summary, when it has one
  const running = shared.state === "ready" || shared.state === "acquire";
  if (summary && summary.series_id && !running) {
    const s = summary;
    outcome.textContent = `last series ${s.series_id} ${s.state}: ${s.outcome}; ${s.images_complete} complete, ` +
      `${s.images_incomplete} incomplete, ${s.images_lost} lost of ${s.images_expected} images; packets ` +
      `${s.packets_received}/${s.packets_expected}` + ((s.problems || []).length ? ` — ${s.problems.join("; ")}` : "");
    outcome.className = `outcome ${s.outcome === "success" ? "good" : "bad"}`;
  } else if (!status["daq/series_id"]) outcome.textContent = "no series yet";
  else {
    outcome.textContent = `${running ? "running" : "last"} series ${status["daq/series_id"]}: ${settled} of ${expected} images, ` +
      `${status["daq/packets_lost"]} packets lost, ${status["daq/frames_incomplete"]} incomplete and ` +
      `${status["daq/frames_lost"]} lost frames`;
    outcome.className = `outcome ${lost ? "bad" : "good"}`;
  }
  outcome.id = "ov-outcome";

  if (v["monitor/config/mode"] === "enabled" || thumb) await refreshThumb().catch(() => {});
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

async function refreshThumb() {
  const bin = thumb ? Math.max(1, Math.ceil(Math.max(thumb.W, thumb.H) / THUMB_SIZE)) : 16;
  const p = new URLSearchParams({ scale: "auto", timeout: "0", bin });
  if (thumb && thumb.bin === bin) { p.set("since_series", thumb.series); p.set("since_image", thumb.image); }
  const r = await fetch(`/ui/api/monitor/view?${p}`);
  const info = document.getElementById("ov-thumb-info");
  if (r.status === 204) return;
  if (!r.ok) {
    info.textContent = r.status === 408 ? "no monitor image yet (monitor/config/mode enabled?)" : await r.text();
    return;
  }
  const n = (k) => Number(r.headers.get(`X-Opendcu-${k}`));
  thumb = { series: n("Series"), image: n("Image"), W: n("Image-Width"), H: n("Image-Height"), bin: n("Bin") };
  const bytes = new Uint8Array(await r.arrayBuffer());
  const canvas = document.getElementById("ov-thumb");
  canvas.width = n("Cols");
  canvas.height = n("Rows");
  const ctx = canvas.getContext("2d");
  const image = ctx.createImageData(canvas.width, canvas.height);
  const out = new Uint32Array(image.data.buffer);
  for (let i = 0; i < bytes.length; i++) out[i] = LUT[bytes[i]];
  ctx.putImageData(image, 0, 0);
  info.textContent = `series ${thumb.series} image ${thumb.image} · ${thumb.W}×${thumb.H} binned ${thumb.bin}×${thumb.bin} · ` +
    `auto ${n("Lo").toFixed(0)}…${n("Hi").toFixed(0)} counts`;
}

export function show(shared) { previous = null; refresh(shared); }
