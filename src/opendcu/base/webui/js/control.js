// Control: the detector commands, enabled as the state machine allows (spec/simplon-api.md §8).
import { command, el, getKey, showMessage } from "./api.js";
import { keyEditor } from "./configuration.js";

const COMMANDS = [
  ["initialize", "detector"], ["arm", "detector"], ["trigger", "detector"], ["disarm", "detector"],
  ["cancel", "detector"], ["abort", "detector"], ["external_trigger", "simulator"],
];
const QUICK = [
  ["detector", "nimages"], ["detector", "ntrigger"], ["detector", "count_time"], ["detector", "frame_time"],
  ["detector", "trigger_mode"], ["filewriter", "mode"], ["filewriter", "name_pattern"], ["monitor", "mode"],
  ["stream", "mode"], ["analysis", "mode"],
];
const busy = new Set();

/** Why `name` is refused in `state` (null: allowed). Mirrors app_detector/control/acquisition.py. */
export function refusal(name, state, triggerMode) {
  if (busy.has(name)) return `${name} is running`;
  if (state === "unreachable" || state === undefined) return "the detector application is not reachable";
  if (name === "initialize") return null;
  if (state === "na") return `${name} is not possible: the detector is not initialized (state na)`;
  if (name === "arm") return state === "idle" ? null : `arm is not possible in state ${state}`;
  if (name === "trigger" || name === "external_trigger") {
    const external = name === "external_trigger";
    if (state !== "ready") return state === "idle" ? `${name}: the detector is not armed (state idle)` :
      `${name} is not possible in state ${state}`;
    if (!external && !["ints", "inte"].includes(triggerMode))
      return `no software trigger in trigger mode ${triggerMode}: use the external trigger`;
    if (external && !["exts", "exte"].includes(triggerMode))
      return `trigger mode is ${triggerMode}: the detector does not listen to its trigger input`;
    return null;
  }
  // disarm, cancel, abort: end a series
  return ["ready", "acquire", "configure"].includes(state) ? null : `no series to end (state ${state})`;
}

let lastShared = null;
const logRows = [];

function log(text, bad = false) {
  logRows.unshift([new Date().toLocaleTimeString(), text, bad]);
  logRows.length = Math.min(logRows.length, 12);
  document.getElementById("ctl-log").replaceChildren(...logRows.map(([t, m, b]) =>
    el("tr", {}, el("td", {}, t), el("td", { class: b ? "bad" : "" }, m))));
}

async function run(name, module) {
  let argument;
  const arg = document.getElementById(`arg-${name}`);
  if (arg && arg.value.trim() !== "") argument = Number(arg.value);
  busy.add(name);
  update(lastShared);
  try {
    const answer = await command(module, name, argument);
    log(`${name}: ${answer === "" || answer === null ? "ok" : JSON.stringify(answer)}`);
    showMessage("");
  } catch (err) {
    log(`${name} refused (${err.status}): ${err.message}`, true);
  } finally {
    busy.delete(name);
    update(lastShared);
  }
}

function update(shared) {
  if (!shared) return;
  for (const [name] of COMMANDS) {
    const why = refusal(name, shared.state, shared.triggerMode);
    const button = document.getElementById(`cmd-${name}`);
    button.disabled = why !== null;
    button.title = why || `PUT …/command/${name}`;
    document.getElementById(`why-${name}`).textContent = why || "";
  }
}

export function init() {
  const box = document.getElementById("ctl-buttons");
  for (const [name, module] of COMMANDS) {
    const extra = name === "trigger" ? el("input", { id: "arg-trigger", placeholder: "count time (inte)", size: 10 })
      : name === "external_trigger" ? el("input", { id: "arg-external_trigger", placeholder: "gate s (exte)", size: 10 }) : null;
    box.append(el("div", { class: "cmd" },
      el("button", { id: `cmd-${name}`, onclick: () => run(name, module) }, name.replace("_", " ")),
      extra, el("span", { class: "reason", id: `why-${name}` })));
  }
}

async function loadQuick() {
  const box = document.getElementById("ctl-quick");
  const editors = await Promise.all(QUICK.map(async ([module, key]) => {
    try {
      return keyEditor(module, key, await getKey(module, "config", key), { label: `${module}/${key}`, prefix: "quick" });
    } catch (err) {
      return el("div", { class: "hint" }, `${module}/${key}: ${err.message}`);
    }
  }));
  box.replaceChildren(...editors);
}

let quickState = null;
export async function refresh(shared) {
  lastShared = shared;
  update(shared);
  const phase = shared.state === "na" || shared.state === "unreachable" ? "down" : "up";
  if (phase !== quickState) {  // the detector's keys appear at initialize
    quickState = phase;
    await loadQuick();
  }
}

export function show(shared) { quickState = null; refresh(shared); }
