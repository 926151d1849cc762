// The live image's colour table: viridis (perceptual, from d3-scale-chromatic) for the contrast levels the
// server sends (0..LEVELS-1), and own colours for gaps and masked pixels (codes of base/rest/ui_images.py).
import viridis from "../vendor/d3-scale-chromatic/src/sequential-multi/viridis.js";

export const LEVELS = 250;
export const GAP = 250;
export const MASKED = 251;
export const GAP_COLOUR = "#5a5a5a";
export const MASKED_COLOUR = "#ff2e9a";

const rgba = (hex) => {
  const n = parseInt(hex.slice(1), 16);
  return (0xff << 24) | ((n & 0xff) << 16) | (n & 0xff00) | ((n >> 16) & 0xff); // little-endian RGBA in a Uint32
};

/** code -> RGBA as one little-endian uint32 (canvas ImageData order) */
export const LUT = new Uint32Array(256);
for (let i = 0; i < LEVELS; i++) LUT[i] = rgba(viridis((i + 0.5) / LEVELS));
LUT[GAP] = rgba(GAP_COLOUR);
LUT[MASKED] = rgba(MASKED_COLOUR);
for (let i = MASKED + 1; i < 256; i++) LUT[i] = rgba("#ffffff");

export const cssColour = (code) => {
  const v = LUT[code];
  return `rgb(${v & 0xff},${(v >> 8) & 0xff},${(v >> 16) & 0xff})`;
};
