// System: the apps of this DCU (state, pid, uptime, restarts, restart button), the server configuration and the
// last output lines of each app.
import { el, request, rows } from "./api.js";

const $ = (id) => document.getElementById(id);
const busy = new Set();
const notes = {};
let configShown = false;

const uptime = (s) => (s >= 3600 ? `${(s / 3600).toFixed(1)} h` : s >= 60 ? `${(s / 60).toFixed(1)} min` : `${s.toFixed(0)} s`);

async function restart(name) {
  busy.add(name);
  refresh();
  try {
    await request("PUT", `/ui/api/apps/${encodeURIComponent(name)}/restart`);
    notes[name] = `restarted at ${new Date().toLocaleTimeString()}`;
  } catch (err) {
    notes[name] = `${err.status}: ${err.message}`;
  } finally {
    busy.delete(name);
  }
}

export async function refresh() {
  const info = await request("GET", "/ui/api/system?log=100");
  $("sys-apps").replaceChildren(
    el("tr", {}, ...["app", "state", "pid", "uptime", "restarts", ""].map((h) => el("th", {}, h))),
    ...info.apps.map((a) => el("tr", { "data-app": a.name },
      el("td", {}, a.name), el("td", { class: a.state === "running" ? "good" : "bad" }, a.state + (a.exit_code !== null ? ` (exit ${a.exit_code})` : "")),
      el("td", {}, a.pid ?? "—"), el("td", {}, uptime(a.uptime_s)), el("td", {}, a.restarts),
      el("td", {}, el("button", { id: `restart-${a.name}`, disabled: busy.has(a.name), onclick: () => restart(a.name) },
        busy.has(a.name) ? "restarting…" : "restart"), " ", el("span", { id: `restart-note-${a.name}`, class: "hint" }, notes[a.name] || "")))));
  if (!configShown) {
    rows($("sys-config"), Object.entries(info.config).map(([k, v]) => [k, v === "" ? "—" : String(v)]));
    configShown = true;
  }
  $("sys-logs").replaceChildren(...info.apps.map((a) => el("details", { open: true },
    el("summary", {}, a.name), el("pre", { class: "applog" }, a.log.join("\n") || "(no output)"))));
}

export function show() { configShown = false; refresh(); }
