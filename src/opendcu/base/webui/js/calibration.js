// Calibration: app-calibration's sets (active, provenance, activate/delete/compare), its procedures (start with
// parameters, progress, cancel), and the active set's flatfield or pixel mask as a map with per-module
// statistics and histograms. Everything goes through the `calibration` module's SIMPLON-style keys and commands,
// so a refusal reads as it does for any REST client; the map comes from /ui/api/calibration/map.
import uPlot from "../vendor/uplot/dist/uPlot.esm.js";
import { command, el, fmt, request, rows, values } from "./api.js";
import { LUT, LEVELS } from "./colormap.js";

const $ = (id) => document.getElementById(id);
//: parameters each procedure is started with unless edited (the server checks them and names the known ones)
const DEFAULTS = {
  flatfield: { photon_energy: 8000, threshold_energy: 4000, precision: 0.01 },
  pixel_mask: { photon_energy: 8000, threshold_energy: 4000 },
  countrate: {},
  threshold: { energies: [8000, 12000] },
  factory: { energies: [8000, 12000, 20000] },
};
let map = null; // the last GET /ui/api/calibration/map answer
let histogram = null;
let shownSets = "";

function say(id, text, refused = false) {
  const box = $(id);
  box.textContent = text || "";
  box.className = refused ? "refusal" : "hint";
}

async function run(id, call) {
  try {
    const answer = await call();
    say(id, "");
    return answer;
  } catch (err) {
    say(id, `${err.status}: ${err.message}`, true);
    return undefined;
  }
}

async function refreshSets(v) {
  const sets = v["calibration/status/sets"] || [];
  const key = JSON.stringify([sets, v["calibration/status/active_set"]]);
  if (key === shownSets) return;
  shownSets = key;
  for (const id of ["cal-set", "cal-compare-with"]) {
    const select = $(id);
    const chosen = select.value;
    select.replaceChildren(...sets.map((s) => el("option", { value: s }, s)));
    if (sets.includes(chosen)) select.value = chosen;
  }
  $("cal-set").value = v["calibration/status/active_set"] ?? sets[0];
  loadMap();
}

function showActive(v) {
  const s = v["calibration/status/active_summary"] || {};
  rows($("cal-active"), [
    ["active set", v["calibration/status/active_set"] ?? "—"],
    ["kind", s.kind ?? "—"],
    ["created", s.created ?? "—"],
    ["from set", s.parent ?? "—"],
    ["flatfield energies (eV)", (s.flatfield_energies || []).map(([e, t]) => `${e}/${t}`).join(", ") || "—"],
    ["masked pixels", fmt(s.masked_pixels)],
    ["dead time τ (s)", (s.dead_time_s || []).map((t) => t.toExponential(3)).join(", ") || "—"],
    ["threshold gain", (s.threshold_gain || []).map((g) => g.toFixed(4)).join(", ") || "—"],
    ["threshold offset (eV)", (s.threshold_offset_ev || []).map((o) => o.toFixed(1)).join(", ") || "—"],
    ["measured by", (s.procedures || []).join(", ") || "—"],
    ["software", s.software_version ?? "—"],
  ]);
}

function showProgress(v) {
  const state = v["calibration/status/state"] ?? "—";
  const fraction = v["calibration/status/progress"] ?? 0;
  $("cal-progress-bar").style.width = `${Math.round(100 * fraction)}%`;
  rows($("cal-run"), [
    ["procedure", v["calibration/status/procedure"] || "—"],
    ["state", state, state === "failed" ? "bad" : ""],
    ["progress", `${(100 * fraction).toFixed(1)} %`],
    ["message", v["calibration/status/message"] || "—"],
    ["series", fmt(v["calibration/status/series"])],
    ["result", v["calibration/status/result"] || "—"],
    ["error", v["calibration/status/error"] || "—", v["calibration/status/error"] ? "bad" : ""],
  ]);
  $("cal-start").disabled = state === "running";
  $("cal-cancel").disabled = state !== "running";
  const select = $("cal-procedure");
  const procedures = v["calibration/status/procedures"] || [];
  if (select.options.length !== procedures.length) {
    select.replaceChildren(...procedures.map((p) => el("option", { value: p }, p)));
    fillParameters();
  }
}

function fillParameters() {
  $("cal-params").value = JSON.stringify(DEFAULTS[$("cal-procedure").value] ?? {});
}

async function start() {
  let params;
  try {
    params = JSON.parse($("cal-params").value || "{}");
  } catch (err) {
    say("cal-run-refusal", `parameters are not JSON: ${err.message}`, true);
    return;
  }
  await run("cal-run-refusal", () => command("calibration", "start", { procedure: $("cal-procedure").value, ...params }));
}

function drawMap() {
  const canvas = $("cal-map");
  if (!map) return;
  canvas.width = map.cols;
  canvas.height = map.rows;
  const ctx = canvas.getContext("2d");
  const image = ctx.createImageData(map.cols, map.rows);
  const bytes = Uint8Array.from(atob(map.codes), (c) => c.charCodeAt(0));
  const out = new Uint32Array(image.data.buffer);
  for (let i = 0; i < bytes.length; i++) out[i] = LUT[bytes[i]];
  ctx.putImageData(image, 0, 0);
  const select = $("cal-module");
  if (select.options.length !== map.modules.length) {
    select.replaceChildren(...map.modules.map((m) => el("option", { value: m.index }, `module ${m.index}`)));
  }
  $("cal-map-info").textContent = map.kind === "flatfield"
    ? `${map.shape[1]} × ${map.shape[0]} pixels, binned ${map.bin} × ${map.bin}; colour range ${fmt(map.lo, 4)} … ${fmt(map.hi, 4)}`
    : `${map.shape[1]} × ${map.shape[0]} pixels, binned ${map.bin} × ${map.bin}; masked pixels in pink, gaps in grey`;
  showModule();
}

function showModule() {
  if (!map) return;
  const m = map.modules[Number($("cal-module").value) || 0];
  if (!m) return;
  const pairs = [
    ["place (x0, y0, w × h)", `${m.x0}, ${m.y0}, ${m.w} × ${m.h}`],
    ["pixels / masked", `${m.pixels} / ${m.masked}`],
    ...Object.entries(m.masked_by_bit).map(([name, n]) => [`masked: ${name}`, n]),
  ];
  if (map.kind === "flatfield") {
    pairs.push(["mean ± std", `${fmt(m.mean, 5)} ± ${fmt(m.std, 3)}`], ["min … max", `${fmt(m.min, 4)} … ${fmt(m.max, 4)}`]);
  }
  rows($("cal-module-stats"), pairs);
  const box = $("cal-histogram");
  let x, y, labels;
  if (map.kind === "flatfield") {
    const e = m.histogram.edges;
    x = e.slice(0, -1).map((a, i) => (a + e[i + 1]) / 2);
    y = m.histogram.counts;
    labels = ["flatfield", "pixels"];
  } else {
    const names = Object.keys(m.masked_by_bit);
    x = names.map((_, i) => i + 1);
    y = names.map((n) => m.masked_by_bit[n]);
    labels = ["mask bit", "pixels"];
  }
  if (histogram) histogram.destroy();
  histogram = new uPlot({
    width: Math.max(300, (box.clientWidth || 420) - 10), height: 220,
    scales: { x: { time: false } },
    axes: [{ label: labels[0] }, { label: labels[1] }],
    series: [{ label: labels[0] }, { label: labels[1], stroke: "#3b528b", fill: "rgba(59,82,139,0.3)",
      paths: uPlot.paths.bars({ size: [0.9] }) }],
  }, [x, y], box);
  window.opendcuCalibration.module = m;
}

async function loadMap() {
  const answer = await run("cal-map-refusal", () =>
    request("GET", `/ui/api/calibration/map?kind=${encodeURIComponent($("cal-kind").value)}`));
  if (answer) {
    map = answer;
    window.opendcuCalibration.map = map;
    drawMap();
  }
}

export function init() {
  window.opendcuCalibration = { map: null, module: null, levels: LEVELS };
  $("cal-procedure").addEventListener("change", fillParameters);
  $("cal-start").addEventListener("click", start);
  $("cal-cancel").addEventListener("click", () => run("cal-run-refusal", () => command("calibration", "cancel")));
  $("cal-activate").addEventListener("click", async () => {
    await run("cal-set-refusal", () => command("calibration", "activate", $("cal-set").value));
    shownSets = "";
  });
  $("cal-delete").addEventListener("click", async () => {
    await run("cal-set-refusal", () => command("calibration", "delete", $("cal-set").value));
    shownSets = "";
  });
  $("cal-describe").addEventListener("click", async () => {
    const d = await run("cal-set-refusal", () => command("calibration", "describe", $("cal-set").value));
    if (d) $("cal-details").textContent = JSON.stringify(d, null, 2);
  });
  $("cal-compare").addEventListener("click", async () => {
    const d = await run("cal-set-refusal", () =>
      command("calibration", "compare", { a: $("cal-set").value, b: $("cal-compare-with").value }));
    if (d) $("cal-details").textContent = JSON.stringify(d, null, 2);
  });
  $("cal-kind").addEventListener("change", loadMap);
  $("cal-module").addEventListener("change", showModule);
  $("cal-map-reload").addEventListener("click", loadMap);
}

const KEYS = ["state", "procedure", "progress", "message", "error", "result", "series", "active_set", "sets",
  "procedures", "active_summary"].map((k) => `calibration/status/${k}`);
let lastState = "";

export async function refresh() {
  const v = await values(KEYS);
  showProgress(v);
  showActive(v);
  await refreshSets(v);
  const state = v["calibration/status/state"];
  if (lastState === "running" && state !== "running") loadMap(); // a new set may be active
  lastState = state;
}

export function show() {
  shownSets = "";
  refresh();
}
