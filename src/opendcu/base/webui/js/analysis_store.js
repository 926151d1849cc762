// Live analysis results of the latest series, from the server-sent events of base/rest/analysis.py.
import { V, request } from "./api.js";

export const store = { series: null, results: new Map(), latest: null, summary: null, listeners: new Set() };
let source = null;

const notify = (kind) => { for (const fn of store.listeners) fn(kind); };

function reset(series) {
  store.series = series;
  store.results = new Map();
  store.latest = null;
}

function add(result) {
  if (result.series_id !== store.series) reset(result.series_id);
  store.results.set(result.image_id, result);
  if (!store.latest || result.image_id >= store.latest.image_id) store.latest = result;
}

/** Load what the latest series already has, then follow the live events. */
export async function start() {
  if (source) return;
  try {
    const answer = await request("GET", `/analysis/api/${V}/results?spots=true&limit=100000`);
    store.summary = answer.summary;
    reset(answer.summary.series_id);
    for (const r of answer.results) add(r);
    if (store.latest) {
      const withProfile = await request("GET", `/analysis/api/${V}/results/${store.latest.image_id}?series=${store.series}`);
      store.results.set(withProfile.image_id, { ...store.results.get(withProfile.image_id), profile: withProfile.profile });
      store.latest = store.results.get(withProfile.image_id);
    }
    notify("load");
  } catch { /* no analysis results yet: the events bring them */ }
  source = new EventSource(`/analysis/api/${V}/events?spots=true&profile=true`);
  source.addEventListener("series_start", (e) => { const s = JSON.parse(e.data); store.summary = s; reset(s.series_id); notify("start"); });
  source.addEventListener("result", (e) => { add(JSON.parse(e.data)); notify("result"); });
  source.addEventListener("series_end", (e) => { store.summary = JSON.parse(e.data); notify("end"); });
}
