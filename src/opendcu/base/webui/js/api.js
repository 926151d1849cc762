// REST helpers: the UI only calls the DCU's REST API, so a refusal reads exactly as it does for any client.
export const V = "1.8.0";

export class ApiError extends Error {
  constructor(status, text) { super(text); this.status = status; }
}

export async function request(method, url, body, headers = {}) {
  const init = { method, headers: { ...headers } };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const response = await fetch(url, init);
  if (!response.ok) throw new ApiError(response.status, (await response.text()) || response.statusText);
  if (response.status === 204) return null;
  const type = response.headers.get("content-type") || "";
  return type.includes("json") ? response.json() : response.text();
}

export const keyUrl = (module, task, key) => `/${module}/api/${V}/${task}/${key}`;
export const getKey = (module, task, key) => request("GET", keyUrl(module, task, key));
export const putConfig = (module, key, value) => request("PUT", keyUrl(module, "config", key), { value });
export const command = (module, name, argument) =>
  request("PUT", keyUrl(module, "command", name), argument === undefined ? undefined : { value: argument });

/** The value of a key, or `fallback` when it does not exist (yet): keys vanish before initialize. */
export async function valueOf(module, task, key, fallback = undefined) {
  try { return (await getKey(module, task, key)).value; } catch { return fallback; }
}

/** Many values at once: {"module/task/key": value}. */
export async function values(refs) {
  const out = {};
  await Promise.all(refs.map(async (ref) => {
    const [module, task, ...key] = ref.split("/");
    out[ref] = await valueOf(module, task, key.join("/"));
  }));
  return out;
}

export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else if (v !== undefined && v !== null && v !== false) node.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) if (c !== null && c !== undefined) node.append(c instanceof Node ? c : String(c));
  return node;
}

export function rows(table, pairs) {
  table.replaceChildren(...pairs.map(([k, v, cls]) => el("tr", {}, el("th", {}, k), el("td", { class: cls || "" }, v))));
}

export const fmt = (v, digits = 3) =>
  v === undefined || v === null ? "—" : typeof v === "number" && !Number.isInteger(v) ? v.toPrecision(digits) : String(v);

export function showMessage(text) {
  const box = document.getElementById("message");
  box.textContent = text || "";
  box.hidden = !text;
}
