// Analysis: live plots (uPlot) of the latest radial profile and of the per-image scores over the series.
import uPlot from "../vendor/uplot/dist/uPlot.esm.js";
import { fmt } from "./api.js";
import { store, start as startAnalysis } from "./analysis_store.js";

const plots = {};
let active = false;
let dirty = true;

const $ = (id) => document.getElementById(id);

function make(id, series, xLabel, yLabel, extra = {}) {
  const box = $(id);
  const opts = {
    width: Math.max(300, (box.clientWidth || 420) - 10), height: 220,
    scales: { x: { time: false } },
    axes: [{ label: xLabel }, { label: yLabel }],
    series: [{ label: xLabel }, ...series],
    ...extra,
  };
  return new uPlot(opts, [[], ...series.map(() => [])], box);
}

function ensurePlots() {
  if (plots.profile) return;
  plots.profile = make("an-profile", [{ label: "intensity", stroke: "#3b528b", width: 1.5 }], "q", "intensity");
  plots.spots = make("an-spots", [
    { label: "spots", stroke: "#21918c", width: 1.5 },
    { label: "spots off ice rings", stroke: "#fde725", width: 1.5 },
  ], "image", "spots");
  plots.dmin = make("an-dmin", [{ label: "d_min (Å)", stroke: "#440154", width: 1.5 }], "image", "Å", {
    axes: [{ label: "image" }, { label: "Å", values: (u, ticks) => ticks.map((t) => t.toFixed(3)) }] });
  plots.hits = make("an-hits", [
    { label: "hit", stroke: "#5ec962", width: 0, points: { show: true, size: 6 } },
    { label: "indexed", stroke: "#3b528b", width: 0, points: { show: true, size: 6 } },
  ], "image", "yes = 1", { scales: { x: { time: false }, y: { range: [-0.1, 1.1] } } });
}

function update() {
  if (!active || !dirty) return;
  dirty = false;
  ensurePlots();
  const results = [...store.results.values()].sort((a, b) => a.image_number - b.image_number || a.image_id - b.image_id);
  const x = results.map((r) => r.image_number ?? r.image_id);
  plots.spots.setData([x, results.map((r) => r.n_spots), results.map((r) => r.n_spots_no_ice)]);
  plots.dmin.setData([x, results.map((r) => r.d_min)]);
  plots.hits.setData([x, results.map((r) => (r.is_hit ? 1 : 0)), results.map((r) => (r.indexed ? 1 : 0))]);
  const withProfile = results.filter((r) => r.profile).at(-1);
  if (withProfile) {
    const p = withProfile.profile;
    plots.profile.setData([p.radial, p.intensity]);
    plots.profile.axes[0].label = p.unit;
    $("an-profile").dataset.image = withProfile.image_id;
  }
  const s = store.summary || {};
  $("an-summary").textContent = store.series ?
    `series ${store.series}: ${store.results.size} images with results · analysed ${s.images_analysed ?? "—"}` +
    ` of ${s.images_received ?? "—"} received${s.decimated ? " (decimated)" : ""} · hit rate ${fmt(s.hit_rate)} · ` +
    `indexing rate ${fmt(s.indexing_rate)} · median d_min ${fmt(s.median_d_min)} Å` +
    (withProfile ? ` · profile of image ${withProfile.image_id}` : "")
    : "no analysis results yet (set analysis/config/mode enabled and take a series)";
}

export function init() {
  store.listeners.add(() => { dirty = true; });
  setInterval(update, 250); // at most 4 redraws a second, however fast the results arrive
}

export function show() { active = true; dirty = true; startAnalysis(); update(); }
export function hide() { active = false; }
