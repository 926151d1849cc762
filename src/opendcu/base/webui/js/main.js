// The single-page app: tabs, the shared detector state, one refresh loop for the visible page.
import { valueOf, values } from "./api.js";
import * as overview from "./overview.js";
import * as control from "./control.js";
import * as configuration from "./configuration.js";
import * as live from "./live.js";
import * as analysis from "./analysis.js";
import * as calibration from "./calibration.js";
import * as files from "./files.js";
import * as system from "./system.js";

const pages = { overview, control, configuration, live, analysis, calibration, files, system };
export const shared = { state: undefined, triggerMode: undefined, model: undefined };
let current = null;

function show(name, push = true) {
  if (!pages[name]) name = "overview";
  if (current === name) return;
  if (current && pages[current].hide) pages[current].hide();
  current = name;
  for (const b of document.querySelectorAll("#tabs button")) b.classList.toggle("active", b.dataset.page === name);
  for (const s of document.querySelectorAll(".page")) s.classList.toggle("active", s.id === `page-${name}`);
  if (push) history.pushState({ page: name }, "", `/ui/${name}`);
  pages[name].show?.(shared);
}

async function pollState() {
  const state = await valueOf("detector", "status", "state", "unreachable");
  if (state !== shared.state) {
    const el = document.getElementById("state");
    el.textContent = state;
    el.className = `state ${state}`;
  }
  if (state !== "na" && state !== "unreachable" && (shared.model === undefined || state !== shared.state)) {
    const v = await values(["detector/config/description", "detector/config/trigger_mode"]);
    shared.model = v["detector/config/description"];
    shared.triggerMode = v["detector/config/trigger_mode"];
    document.getElementById("model").textContent = shared.model ?? "—";
  }
  shared.state = state;
}

async function loop() {
  for (;;) {
    const started = performance.now();
    try {
      await pollState();
      await pages[current]?.refresh?.(shared);
    } catch (err) {
      console.error(err);
    }
    await new Promise((r) => setTimeout(r, Math.max(100, 700 - (performance.now() - started))));
  }
}

for (const b of document.querySelectorAll("#tabs button")) b.addEventListener("click", () => show(b.dataset.page));
window.addEventListener("popstate", () => show(location.pathname.split("/")[2] || "overview", false));
for (const page of Object.values(pages)) page.init?.(shared);
show(location.pathname.split("/")[2] || "overview", false);
window.opendcu = { shared, show };
loop();
