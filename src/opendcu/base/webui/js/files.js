// Files: the data directory with sizes and times; download, delete, and a master file's summary.
import { el, fmt, request, showMessage } from "./api.js";

const $ = (id) => document.getElementById(id);
const size = (n) => (n >= 1 << 20 ? `${(n / (1 << 20)).toFixed(1)} MiB` : n >= 1024 ? `${(n / 1024).toFixed(1)} KiB` : `${n} B`);
const dataUrl = (name) => `/data/${name.split("/").map(encodeURIComponent).join("/")}`;

async function summary(name) {
  const box = $("files-summary");
  box.hidden = false;
  box.replaceChildren(el("h3", {}, `${name}`), el("p", {}, "reading…"));
  try {
    const s = await request("GET", `/ui/api/files/${name.split("/").map(encodeURIComponent).join("/")}/summary`);
    const pairs = [
      ["images", `${s.images}${s.nimages ? ` (nimages ${s.nimages} × ntrigger ${s.ntrigger ?? 1})` : ""}`],
      ["image shape", s.image_shape ? `${s.image_shape.join(" × ")} ${s.dtype}` : "—"],
      ["bit depth (image / readout)", `${s.bit_depth_image ?? "—"} / ${s.bit_depth_readout ?? "—"}`],
      ["compression", `${s.compression ?? "—"} (HDF5 filters: ${s.hdf5_filters.join(", ") || "none"})`],
      ["beam centre (px)", `${fmt(s.beam_center_x, 6)}, ${fmt(s.beam_center_y, 6)}`],
      ["detector distance (m)", fmt(s.detector_distance, 6)],
      ["wavelength (Å)", fmt(s.wavelength, 6)],
      ["pixel size (m)", fmt(s.x_pixel_size, 4)],
      ["count time / frame time (s)", `${fmt(s.count_time)} / ${fmt(s.frame_time)}`],
      ["data", s.data.map((d) => `${d.name}: ${d.images ?? "missing"}`).join(", ") || "—"],
    ];
    box.replaceChildren(el("h3", {}, name), el("table", { id: "files-summary-table" },
      ...pairs.map(([k, v]) => el("tr", { "data-field": k }, el("th", {}, k), el("td", {}, v)))));
  } catch (err) {
    box.replaceChildren(el("h3", {}, name), el("p", { class: "refusal" }, `${err.status}: ${err.message}`));
  }
}

async function remove(name, button) {
  if (button.dataset.armed !== "1") {  // two clicks: a delete is not undone
    button.dataset.armed = "1";
    button.textContent = "really delete?";
    setTimeout(() => { button.dataset.armed = ""; button.textContent = "delete"; }, 4000);
    return;
  }
  try {
    await request("DELETE", dataUrl(name));
    showMessage("");
  } catch (err) {
    showMessage(`delete ${name}: ${err.status}: ${err.message}`);
  }
  load();
}

async function load() {
  const files = await request("GET", "/ui/api/files");
  const table = $("files-table");
  table.replaceChildren(el("tr", {}, ...["name", "size", "modified", "", "", ""].map((h) => el("th", {}, h))),
    ...files.map((f) => el("tr", { "data-name": f.name },
      el("td", {}, f.name), el("td", {}, size(f.size)), el("td", {}, new Date(f.mtime * 1000).toLocaleString()),
      el("td", {}, el("a", { href: dataUrl(f.name), download: f.name.split("/").at(-1), class: "download" }, "download")),
      el("td", {}, f.name.endsWith("_master.h5") ? el("button", { class: "summary", onclick: () => summary(f.name) }, "summary") : ""),
      el("td", {}, el("button", { class: "delete", onclick: (e) => remove(f.name, e.target) }, "delete")))));
  $("files-dir").textContent = `${files.length} files`;
}

export function init() { $("files-reload").addEventListener("click", load); }
export function show() { load(); }
