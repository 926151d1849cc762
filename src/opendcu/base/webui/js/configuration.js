// Configuration: every config and status key of every module, grouped, with its metadata; rw keys are editable.
import { el, fmt, keyUrl, putConfig, request } from "./api.js";

const MODULES = ["detector", "filewriter", "stream", "monitor", "analysis", "calibration", "system", "simulator"];
let loaded = false;

export const fieldId = (prefix, module, key) => `${prefix}-${module}-${key.replaceAll("/", "__")}`;

function display(descriptor) {
  const v = descriptor.value;
  if (v && typeof v === "object" && v.__darray__) return `2-D ${v.type} array ${v.shape.join(" × ")}`;
  return typeof v === "object" ? JSON.stringify(v) : String(v);
}

/** The text of an input as the JSON value to PUT; what does not parse goes as typed, so the server explains. */
export function parseValue(text, type) {
  const t = text.trim();
  if (type.endsWith("[]")) { try { return JSON.parse(t); } catch { return text; } }
  if (type === "bool") return t === "true" ? true : t === "false" ? false : text;
  if (["uint", "int", "float", "double"].includes(type)) return t !== "" && Number.isFinite(Number(t)) ? Number(t) : text;
  return text;
}

/** An editor for one key: input or select, a Set button, the refusal text or the changed keys next to it. */
export function keyEditor(module, key, descriptor, { label = null, prefix = "cfg", onChanged = null } = {}) {
  const id = fieldId(prefix, module, key);
  const type = descriptor.value_type;
  const writable = (descriptor.access_mode || "r").includes("w");
  const note = el("span", { class: "refusal", id: `${id}-error` });
  let input;
  if (!writable) {
    input = el("span", { id, class: "value" }, display(descriptor));
  } else if (descriptor.allowed_values || type === "bool") {
    const options = descriptor.allowed_values || [true, false];
    input = el("select", { id }, ...options.map((o) =>
      el("option", { value: JSON.stringify(o), selected: JSON.stringify(o) === JSON.stringify(descriptor.value) }, String(o))));
  } else {
    input = el("input", { id, value: typeof descriptor.value === "object" ? JSON.stringify(descriptor.value) : String(descriptor.value), size: 14 });
  }
  const submit = async () => {
    const value = input.tagName === "SELECT" ? JSON.parse(input.value) : parseValue(input.value, type);
    note.className = "refusal";
    note.textContent = "…";
    try {
      const changed = await putConfig(module, key, value);
      note.className = "changed-note";
      note.textContent = changed.length ? `changed: ${changed.join(", ")}` : "unchanged";
      onChanged?.(module, changed);
    } catch (err) {
      note.className = "refusal";
      note.textContent = `${err.status}: ${err.message}`;
    }
  };
  const controls = [input];
  if (writable) {
    if (input.tagName === "SELECT") input.addEventListener("change", submit);
    else input.addEventListener("keydown", (e) => { if (e.key === "Enter") submit(); });
    controls.push(el("button", { id: `${id}-set`, onclick: submit }, "Set"));
  }
  return el("div", { class: "field", "data-key": `${module}/${key}` }, label ? el("label", { for: id }, label) : null, ...controls, note);
}

function meta(d) {
  const limits = d.min !== undefined || d.max !== undefined ? `${fmt(d.min, 6)} … ${fmt(d.max, 6)}` : "";
  return [d.value_type, d.unit || "", limits, d.allowed_values ? d.allowed_values.join(", ") : "", d.access_mode || ""];
}

async function describe(module, task, key) {
  const response = await fetch(keyUrl(module, task, key), { headers: { Accept: "application/json, image/tiff" } });
  if (!response.ok) return { error: `${response.status}: ${await response.text()}` };
  if ((response.headers.get("content-type") || "").includes("tiff")) {
    const size = (await response.arrayBuffer()).byteLength;
    return { value_type: "array (TIFF)", access_mode: "rw", tiff: size };
  }
  return response.json();
}

function keyRow(module, task, key, d, onChanged) {
  const cells = d.error ? [el("td", { class: "refusal", colspan: 6 }, d.error)]
    : d.tiff ? [el("td", {}, el("a", { href: keyUrl(module, task, key) }, `2-D array, TIFF (${d.tiff} bytes)`)), ...meta(d).map((m) => el("td", { class: "meta" }, m))]
      : [el("td", {}, task === "config" ? keyEditor(module, key, d, { onChanged }) : el("span", { class: "value", id: fieldId("cfg", module, key) }, display(d))),
        ...meta(d).map((m) => el("td", { class: "meta" }, m))];
  return el("tr", { "data-key": `${module}/${task}/${key}` }, el("td", {}, key), ...cells);
}

async function loadModule(module) {
  const box = el("details", { class: "module", open: module === "detector", id: `cfg-module-${module}` }, el("summary", {}, module));
  const table = el("table", { class: "keys" },
    el("tr", {}, ...["key", "value", "type", "unit", "limits", "allowed values", "access"].map((h) => el("th", {}, h))));
  box.append(table);
  const onChanged = async (mod, changed) => {
    for (const k of changed) {
      const row = document.querySelector(`#cfg-module-${mod} tr[data-key="${mod}/config/${k}"]`);
      if (!row) continue;
      const fresh = keyRow(mod, "config", k, await describe(mod, "config", k), onChanged);
      fresh.classList.add("changed");
      if (row.contains(document.activeElement)) {  // keep the edited field (and its note) where the user is
        row.classList.add("changed");
        continue;
      }
      row.replaceWith(fresh);
    }
  };
  for (const task of ["config", "status"]) {
    let keys;
    try {
      keys = await request("GET", keyUrl(module, task, "keys"));
    } catch (err) {
      table.append(el("tr", {}, el("td", { class: "refusal", colspan: 7 }, `${task}: ${err.message}`)));
      continue;
    }
    const described = await Promise.all(keys.map((k) => describe(module, task, k)));
    let group = null;
    keys.map((k, i) => [k, described[i]]).sort(([a], [b]) => groupOf(a).localeCompare(groupOf(b)) || a.localeCompare(b))
      .forEach(([k, d]) => {
        const g = `${task} · ${groupOf(k)}`;
        if (g !== group) { group = g; table.append(el("tr", {}, el("th", { class: "group", colspan: 7 }, g))); }
        table.append(keyRow(module, task, k, d, onChanged));
      });
  }
  return box;
}

const groupOf = (key) => (key.includes("/") ? key.split("/")[0] : "general");

async function load() {
  const status = document.getElementById("cfg-status");
  status.textContent = "loading…";
  const boxes = await Promise.all(MODULES.map(async (m) => {
    try { return await loadModule(m); } catch (err) { return el("p", { class: "refusal" }, `${m}: ${err.message}`); }
  }));
  document.getElementById("cfg-modules").replaceChildren(...boxes);
  status.textContent = `${document.querySelectorAll("#cfg-modules tr[data-key]").length} keys`;
  applyFilter();
  loaded = true;
}

function applyFilter() {
  const text = document.getElementById("cfg-filter").value.trim().toLowerCase();
  for (const row of document.querySelectorAll("#cfg-modules tr[data-key]"))
    row.hidden = text !== "" && !row.dataset.key.toLowerCase().includes(text);
}

export function init() {
  document.getElementById("cfg-reload").addEventListener("click", load);
  document.getElementById("cfg-filter").addEventListener("input", applyFilter);
}

let loadedFor = null;
export function show(shared) {
  const phase = shared.state === "na" ? "na" : "up";
  if (!loaded || loadedFor !== phase) { loadedFor = phase; load(); }
}
