// Live image: the newest monitor image, binned and contrast-scaled by the server (GET /ui/api/monitor/view, one
// byte per output pixel), coloured here through the viridis table onto a canvas; zoom, pan, cursor readout,
// beam centre, resolution rings and the live analysis spots.
import { el, values } from "./api.js";
import { LUT, GAP, MASKED, GAP_COLOUR, MASKED_COLOUR, cssColour } from "./colormap.js";
import { store, start as startAnalysis } from "./analysis_store.js";

const RINGS_A = [8, 5, 4, 3, 2.5, 2, 1.6, 1.3, 1.1, 1.0];
let active = false;
let view = { s: 1, ox: 0, oy: 0, fitted: false };
let shown = null;      // the frame on the raw canvas: headers of its answer
let rerender = true;   // the region or contrast changed: render the shown image again
let newest = true;     // the page was (re)opened: fetch the newest image, whatever is pinned
let geometry = null;
let geometryFor = null;
let pixelQuery = null;
const stats = { frames: 0, times: [] };
const MIN_PERIOD_MS = 150; // at most ~6.7 new images a second: enough to watch, and what a 4M at its highest rate affords on 2 cores
let lastLatest = 0;

const $ = (id) => document.getElementById(id);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function loadGeometry() {
  const v = await values(["beam_center_x", "beam_center_y", "detector_distance", "wavelength", "x_pixel_size",
    "x_pixels_in_detector", "binning_2x2_applied"].map((k) => `detector/config/${k}`));
  const g = (k) => v[`detector/config/${k}`];
  geometry = { bcx: g("beam_center_x"), bcy: g("beam_center_y"), distance: g("detector_distance"),
    wavelength: g("wavelength"), pixel: g("x_pixel_size"), width: g("x_pixels_in_detector"), binned: g("binning_2x2_applied") };
}

/** Beam centre and pixel size in the monitor image's pixels (binning_2x2 halves the image). */
function imageGeometry() {
  if (!geometry || !shown || geometry.bcx === undefined) return null;
  const k = geometry.width && shown.W ? geometry.width / shown.W : 1;
  return { bcx: geometry.bcx / k, bcy: geometry.bcy / k, pixel: geometry.pixel * k, distance: geometry.distance,
    wavelength: geometry.wavelength };
}

export function resolutionAt(x, y) {
  const g = imageGeometry();
  if (!g || !g.distance || !g.wavelength) return null;
  const r = Math.hypot((x + 0.5 - g.bcx) * g.pixel, (y + 0.5 - g.bcy) * g.pixel);
  const theta = Math.atan2(r, g.distance) / 2;
  return theta > 0 ? g.wavelength / (2 * Math.sin(theta)) : Infinity;
}

function canvasSize() {
  const c = $("live-view");
  if (c.width !== c.clientWidth || c.height !== c.clientHeight) {
    c.width = c.clientWidth;
    c.height = c.clientHeight;
    if (view.fitted) fit();
  }
  return [c.width, c.height];
}

function fit() {
  if (!shown) return;
  const [cw, ch] = [$("live-view").width, $("live-view").height];
  view.s = Math.min(cw / shown.W, ch / shown.H);
  view.ox = (cw - shown.W * view.s) / 2;
  view.oy = (ch - shown.H * view.s) / 2;
  view.fitted = true;
  rerender = true;
}

function region(W, H) {
  const [cw, ch] = canvasSize();
  const x0 = Math.max(0, Math.min(W - 1, Math.floor(-view.ox / view.s)));
  const y0 = Math.max(0, Math.min(H - 1, Math.floor(-view.oy / view.s)));
  const x1 = Math.max(x0 + 1, Math.min(W, Math.ceil((cw - view.ox) / view.s)));
  const y1 = Math.max(y0 + 1, Math.min(H, Math.ceil((ch - view.oy) / view.s)));
  return { x0, y0, w: x1 - x0, h: y1 - y0, bin: Math.max(1, Math.floor(1 / view.s)) };
}

function query(ids, since) {
  const p = new URLSearchParams({ scale: $("live-scale").value, timeout: "1000" });
  if ($("live-lo").value.trim()) p.set("lo", $("live-lo").value.trim());
  if ($("live-hi").value.trim()) p.set("hi", $("live-hi").value.trim());
  if (shown) for (const [k, v] of Object.entries(region(shown.W, shown.H))) p.set(k, v);
  if (ids) { p.set("series", ids.series); p.set("image", ids.image); }
  else if (shown && since) { p.set("since_series", shown.series); p.set("since_image", shown.image); }
  return p;
}

function paint(bytes, h) {
  const raw = $("live-raw");
  raw.width = h.cols;
  raw.height = h.rows;
  const ctx = raw.getContext("2d");
  const image = ctx.createImageData(h.cols, h.rows);
  const out = new Uint32Array(image.data.buffer);
  for (let i = 0; i < bytes.length; i++) out[i] = LUT[bytes[i]];
  ctx.putImageData(image, 0, 0);
}

function draw() {
  const c = $("live-view");
  const ctx = c.getContext("2d");
  ctx.fillStyle = "#111";
  ctx.fillRect(0, 0, c.width, c.height);
  if (!shown) return;
  ctx.imageSmoothingEnabled = false;
  const { s, ox, oy } = view;
  ctx.drawImage($("live-raw"), 0, 0, shown.cols, shown.rows, ox + shown.x0 * s, oy + shown.y0 * s,
    shown.cols * shown.bin * s, shown.rows * shown.bin * s);
  const g = imageGeometry();
  if (g) {
    const bx = ox + g.bcx * s, by = oy + g.bcy * s;
    ctx.strokeStyle = "#ff5252";
    ctx.lineWidth = 1.5;
    ctx.beginPath();
    ctx.moveTo(bx - 10, by); ctx.lineTo(bx + 10, by); ctx.moveTo(bx, by - 10); ctx.lineTo(bx, by + 10);
    ctx.stroke();
    if ($("live-rings").checked && g.distance && g.wavelength) {
      ctx.strokeStyle = "rgba(255,255,255,.55)";
      ctx.fillStyle = "rgba(255,255,255,.85)";
      ctx.font = "12px sans-serif";
      for (const d of RINGS_A) {
        const sin = g.wavelength / (2 * d);
        if (sin >= Math.SQRT1_2) continue; // 2θ >= 90°: no ring on a flat detector
        const r = (g.distance * Math.tan(2 * Math.asin(sin))) / g.pixel;
        if (r > 2 * Math.max(shown.W, shown.H)) continue;
        ctx.beginPath();
        ctx.arc(bx, by, r * s, 0, 2 * Math.PI);
        ctx.stroke();
        ctx.fillText(`${d} Å`, bx + r * s * 0.707 + 3, by - r * s * 0.707 - 3);
      }
    }
  }
  const result = store.series === shown.series ? store.results.get(shown.image) : null;
  $("live-spots-note").textContent = !$("live-spots").checked || !store.results.size ? "" :
    result ? `${result.n_spots} spots` : "not analysed";
  if ($("live-spots").checked && result?.spots) {
    ctx.strokeStyle = "#ffeb3b";
    ctx.lineWidth = 1.2;
    const radius = Math.max(4, 3 * s);
    for (let i = 0; i < result.spots.x.length; i++) {
      ctx.beginPath();
      ctx.arc(ox + result.spots.x[i] * s, oy + result.spots.y[i] * s, radius, 0, 2 * Math.PI);
      ctx.stroke();
    }
  }
}

function headersOf(response) {
  const n = (k) => Number(response.headers.get(`X-Opendcu-${k}`));
  return { series: n("Series"), image: n("Image"), W: n("Image-Width"), H: n("Image-Height"), x0: n("X0"), y0: n("Y0"),
    w: n("W"), h: n("H"), bin: n("Bin"), cols: n("Cols"), rows: n("Rows"), lo: n("Lo"), hi: n("Hi"), max: n("Max"),
    dtype: response.headers.get("X-Opendcu-Dtype"), scale: $("live-scale").value };
}

function info(text) {
  $("live-info").textContent = text;
}

async function frameLoop() {
  for (;;) {
    if (!active || ($("live-pause").checked && !rerender)) { await sleep(100); continue; }
    const again = rerender && shown ? { series: shown.series, image: shown.image } : null;
    const goto = newest ? "" : $("live-goto").value.trim();  // on showing the page: the newest series first
    const pinned = newest ? null : goto !== "" && shown ? { series: shown.series, image: Number(goto) }
      : $("live-pause").checked && shown ? { series: shown.series, image: shown.image } : again;
    const since = !newest && !rerender;
    newest = false;
    if (goto !== "" && shown && shown.image === Number(goto) && !rerender) { await sleep(100); continue; }
    const params = query(pinned, since);
    if (!pinned) {
      // each newest-image request makes app-detector decode one image: at most 1000/MIN_PERIOD_MS a second
      const wait = lastLatest + MIN_PERIOD_MS - performance.now();
      if (wait > 0) await sleep(wait);
      lastLatest = performance.now();
    }
    const wasRerender = rerender;
    rerender = false;
    let response;
    try {
      response = await fetch(`/ui/api/monitor/view?${params}`);
    } catch (err) { info(`no answer: ${err}`); await sleep(500); continue; }
    if (response.status === 204) continue;
    if (!response.ok) {
      const text = await response.text();
      if (wasRerender && response.status === 404 && goto === "") { shown = null; continue; } // it left the buffer
      info(response.status === 408 ? "waiting for a monitor image (is monitor/config/mode enabled?)" : `${response.status}: ${text}`);
      await sleep(300);
      continue;
    }
    const h = headersOf(response);
    const bytes = new Uint8Array(await response.arrayBuffer());
    const first = !shown || shown.W !== h.W || shown.H !== h.H;
    const fresh = !shown || shown.series !== h.series || shown.image !== h.image;
    if (!shown || shown.series !== h.series || geometryFor !== h.series) { geometryFor = h.series; loadGeometry().then(draw); }
    shown = { ...h, query: params.toString() };
    paint(bytes, h);
    if (first) { fit(); }
    draw();
    if (fresh) {
      stats.frames += 1;
      const now = performance.now();
      stats.times.push(now);
      while (stats.times.length && now - stats.times[0] > 2000) stats.times.shift();
    }
    const rate = stats.times.length > 1 ? (stats.times.length - 1) / ((stats.times.at(-1) - stats.times[0]) / 1000) : 0;
    info(`series ${h.series} image ${h.image} · ${h.W}×${h.H} ${h.dtype} · bin ${h.bin} · ` +
      `${h.scale} ${h.lo.toFixed(0)}…${h.hi.toFixed(0)} · max ${h.max} · ${rate.toFixed(1)} images/s`);
  }
}

function imageAt(event) {
  const rect = $("live-view").getBoundingClientRect();
  const mx = event.clientX - rect.left, my = event.clientY - rect.top;
  return { mx, my, x: Math.floor((mx - view.ox) / view.s), y: Math.floor((my - view.oy) / view.s) };
}

async function readPixel(x, y) {
  if (!shown || x < 0 || y < 0 || x >= shown.W || y >= shown.H) { $("live-cursor").textContent = "outside the image"; return; }
  const d = resolutionAt(x, y);
  const where = `x ${x}  y ${y}`;
  const res = d === null ? "" : `  d ${Number.isFinite(d) ? d.toFixed(2) : "∞"} Å`;
  $("live-cursor").textContent = `${where}  counts …${res}`;
  pixelQuery = { x, y };
  if (readPixel.busy) return;
  readPixel.busy = true;
  try {
    while (pixelQuery) {
      const q = pixelQuery;
      pixelQuery = null;
      const r = await fetch(`/ui/api/monitor/pixel?series=${shown.series}&image=${shown.image}&x=${q.x}&y=${q.y}`);
      const body = r.ok ? await r.json() : { kind: "error", counts: await r.text() };
      const dq = resolutionAt(q.x, q.y);
      const counts = body.kind === "counts" ? String(body.counts) : body.kind;
      const box = $("live-cursor");
      box.textContent = `x ${q.x}  y ${q.y}  counts ${counts}` + (dq === null ? "" : `  d ${Number.isFinite(dq) ? dq.toFixed(2) : "∞"} Å`);
      box.dataset.x = q.x; box.dataset.y = q.y; box.dataset.counts = body.counts; box.dataset.image = body.image;
    }
  } finally { readPixel.busy = false; }
}

export function init() {
  const c = $("live-view");
  let drag = null;
  c.addEventListener("wheel", (e) => {
    e.preventDefault();
    const { mx, my } = imageAt(e);
    const f = Math.exp(-e.deltaY * 0.0015);
    const s = Math.min(64, Math.max(0.02, view.s * f));
    view.ox = mx - ((mx - view.ox) * s) / view.s;
    view.oy = my - ((my - view.oy) * s) / view.s;
    view.s = s;
    view.fitted = false;
    rerender = true;
    draw();
  }, { passive: false });
  c.addEventListener("mousedown", (e) => { drag = { x: e.clientX, y: e.clientY, ox: view.ox, oy: view.oy }; });
  window.addEventListener("mouseup", () => { if (drag) { drag = null; rerender = true; } });
  c.addEventListener("mousemove", (e) => {
    if (drag) {
      view.ox = drag.ox + e.clientX - drag.x;
      view.oy = drag.oy + e.clientY - drag.y;
      view.fitted = false;
      draw();
      return;
    }
    const { x, y } = imageAt(e);
    readPixel(x, y);
  });
  $("live-fit").addEventListener("click", () => { fit(); draw(); });
  for (const id of ["live-scale", "live-lo", "live-hi", "live-goto"]) $(id).addEventListener("change", () => { rerender = true; });
  for (const id of ["live-rings", "live-spots"]) $(id).addEventListener("change", draw);
  $("live-legend").append("gap", el("i", { style: `background:${GAP_COLOUR}` }), " masked",
    el("i", { style: `background:${MASKED_COLOUR}` }), " low", el("i", { style: `background:${cssColour(0)}` }),
    " high", el("i", { style: `background:${cssColour(249)}` }));
  store.listeners.add(() => { if (active) draw(); });
  // what the browser tests read: the colour table, the frame shown, how many frames were shown
  window.opendcuLive = { lut: LUT, GAP, MASKED, stats, get shown() { return shown; }, get view() { return view; },
    screenOf: (x, y) => [view.ox + (x + 0.5) * view.s, view.oy + (y + 0.5) * view.s], resolutionAt };
  frameLoop();
}

export function show() { active = true; startAnalysis(); canvasSize(); rerender = true; newest = true; }
export function hide() { active = false; }
