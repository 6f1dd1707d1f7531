/* Shared by both views: decode the payload, read rows of the maps, colours, small DOM helpers.
   This file and the view file are pasted into one classic script, wrapped in a function of
   `root` (the view's own element), so nothing here is global and two views never collide. */

const TVZ_HEAD_COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b",
                         "#e377c2", "#7f7f7f", "#bcbd22", "#17becf", "#393b79", "#ad494a"];

function tvzHeadColor(index) {
  if (index < TVZ_HEAD_COLORS.length) return TVZ_HEAD_COLORS[index];
  return "hsl(" + Math.round((index * 137.508) % 360) + ", 65%, 45%)";
}

function tvzBase64Bytes(text) {
  const binary = atob(text.trim());
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
  return bytes;
}

async function tvzInflate(bytes, format) {
  if (!format) return bytes;
  if (typeof DecompressionStream === "undefined") {
    throw new Error("this browser has no DecompressionStream " +
                    "(needs Chrome 80, Firefox 113, Safari 16.4 or newer)");
  }
  // Blob + Response, not a data: URL: nothing is loaded, so no CSP or file:// rule can get in the way.
  const stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream(format));
  return new Uint8Array(await new Response(stream).arrayBuffer());
}

/* The maps, (layers, heads, queries, keys), read one row or column at a time (layout: _codec.py). */
class TvzMaps {
  constructor(meta, raw) {
    if (meta.encoding !== "sqrt-rowmax") throw new Error("unknown encoding " + meta.encoding);
    const [L, H, Q, K] = meta.shape, E = meta.exact_keys, rows = L * H * Q;
    Object.assign(this, {L, H, Q, K, E});
    const expected = rows * 4 * (1 + E) + rows * (K - E);
    if (raw.length !== expected) {
      throw new Error("payload has " + raw.length + " bytes, expected " + expected);
    }
    const floats = new Float32Array(raw.buffer.slice(raw.byteOffset, raw.byteOffset + rows * 4 * (1 + E)));
    this.scale = floats.subarray(0, rows);
    this.exact = floats.subarray(rows);
    this.codes = raw.subarray(rows * 4 * (1 + E));
    const levels = (1 << meta.bits) - 1;
    this.lookup = new Float32Array(levels + 1);
    for (let i = 0; i <= levels; i++) this.lookup[i] = (i / levels) * (i / levels);
  }
  value(r, k) {
    if (k < this.E) return this.exact[r * this.E + k];
    return this.scale[r] * this.lookup[this.codes[r * (this.K - this.E) + k - this.E]];
  }
  /* Row `query`, averaged over `heads` (an array of head indices; one head gives that head's row). */
  row(layer, heads, query, out) {
    const {K, E} = this, C = K - E;
    out = out || new Float32Array(K);
    out.fill(0);
    for (const head of heads) {
      const r = (layer * this.H + head) * this.Q + query, n = heads.length;
      for (let k = 0; k < E; k++) out[k] += this.exact[r * E + k] / n;
      const s = this.scale[r] / n, base = r * C;
      for (let k = 0; k < C; k++) out[E + k] += s * this.lookup[this.codes[base + k]];
    }
    return out;
  }
  /* Column `key`: how much each query attends to it, averaged over `heads`. */
  column(layer, heads, key, out) {
    out = out || new Float32Array(this.Q);
    out.fill(0);
    for (const head of heads) {
      for (let q = 0; q < this.Q; q++) {
        out[q] += this.value((layer * this.H + head) * this.Q + q, key) / heads.length;
      }
    }
    return out;
  }
}

/* The view's colour map: config.colormap, RGB rows sampled from matplotlib's colour map when the view
   was built (the one of every figure unless cmap= chose another), set by tvzStart. */
let tvzTable = [[0, 0, 0], [255, 255, 255]];

function tvzColormap(t) {
  return tvzTableColor(tvzTable, t);
}

/* The colour at t (0..1) of a table of RGB rows, interpolated. */
function tvzTableColor(table, t) {
  t = Math.min(1, Math.max(0, t)) * (table.length - 1);
  const i = Math.min(table.length - 2, Math.floor(t)), f = t - i;
  const a = table[i], b = table[i + 1];
  return [a[0] + (b[0] - a[0]) * f, a[1] + (b[1] - a[1]) * f, a[2] + (b[2] - a[2]) * f];
}

/* Relevance (visualizer/view/_relevance.py): config.relevance describes the scores, which the
   "tvz-relevance" block holds as little-endian float32, one per token. */
function tvzRelevanceScores(root, meta) {
  if (meta.encoding !== "float32-le") throw new Error("unknown relevance encoding " + meta.encoding);
  const bytes = tvzBase64Bytes(root.querySelector(".tvz-relevance").textContent);
  if (bytes.length !== 4 * meta.count) {
    throw new Error("relevance payload has " + bytes.length + " bytes, expected " + 4 * meta.count);
  }
  const data = new DataView(bytes.buffer, bytes.byteOffset, bytes.length);
  const scores = new Float32Array(meta.count);
  for (let i = 0; i < meta.count; i++) scores[i] = data.getFloat32(4 * i, true);
  return scores;
}

/* How each view draws relevance: the opacity from `floor` (a score of 0) to `top` (the end of the
   scale), and how far from the colour map's white middle the colours `reach` (0.5: to its darkest
   ends; text keeps away from them, so dark text stays readable on its most relevant tokens). */
const TVZ_RELEVANCE_TEXT = {floor: 0, top: 0.85, reach: 0.4};
const TVZ_RELEVANCE_IMAGE = {floor: 0.2, top: 0.85, reach: 0.5};

/* A score's [r, g, b, alpha]: red positive, blue negative, white at 0 (sequential scores use the
   white-to-red half), clamped at +-meta.limit; `look`: one of the TVZ_RELEVANCE_* above. */
function tvzRelevanceColor(meta, score, look) {
  const t = meta.limit > 0 ? Math.max(-1, Math.min(1, score / meta.limit)) : 0;
  const [r, g, b] = tvzTableColor(meta.colormap, 0.5 + look.reach * t);
  return [Math.round(r), Math.round(g), Math.round(b), look.floor + (look.top - look.floor) * Math.abs(t)];
}

function tvzRgba(color) {
  return "rgba(" + color[0] + ", " + color[1] + ", " + color[2] + ", " + color[3].toFixed(3) + ")";
}

/* A signed number, short: "0.12", or a minus sign (U+2212) and "0.034". */
function tvzSigned(w) {
  return (w < 0 ? "\u2212" : "") + tvzFormat(Math.abs(w));
}

/* The relevance colour bar, `width` px wide, drawn as the scores are (same colours, same opacity),
   with its ticks and a line saying which scale it is. */
function tvzRelevanceLegend(meta, width, look) {
  const legend = tvzEl("div", "tvz-legend tvz-rel-legend");
  const [bar, context] = tvzCanvas("tvz-colorbar", width, 10);
  const low = meta.signed ? -meta.limit : 0;
  for (let x = 0; x < width; x++) {
    context.fillStyle = tvzRgba(tvzRelevanceColor(meta, low + (meta.limit - low) * (x + 0.5) / width, look));
    context.fillRect(x, 0, 1, 10);
  }
  const ticks = tvzEl("div", "tvz-ticks");
  const values = meta.signed ? [-meta.limit, 0, meta.limit] : [0, meta.limit / 2, meta.limit];
  for (const value of values) ticks.appendChild(tvzEl("span", "tvz-tick", tvzSigned(value)));
  const scale = tvzEl("div", "tvz-rel-scale", meta.signed
    ? "Diverging scale centred at 0 (faint): red positive (raised the target), blue negative (lowered it)."
    : "Sequential scale: 0 (faint) to the largest score (red); no score is negative.");
  legend.append(bar, ticks, scale);
  return legend;
}

function tvzEl(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function tvzFormat(w) {
  if (w >= 0.1) return w.toFixed(2);
  if (w >= 0.001) return w.toFixed(3);
  return w === 0 ? "0" : w.toExponential(1);
}

/* A canvas sized in CSS pixels, drawn at device resolution. */
function tvzCanvas(className, width, height) {
  const canvas = tvzEl("canvas", className);
  const ratio = window.devicePixelRatio || 1;
  canvas.width = Math.round(width * ratio);
  canvas.height = Math.round(height * ratio);
  canvas.style.width = width + "px";
  canvas.style.height = height + "px";
  const context = canvas.getContext("2d");
  context.setTransform(ratio, 0, 0, ratio, 0, 0);
  return [canvas, context];
}

/* The colours of the current theme (the CSS variables on .tvz), for what a view draws on canvases. */
function tvzTheme(root) {
  const style = getComputedStyle(root);
  const read = name => style.getPropertyValue(name).trim();
  return {bg: read("--tvz-bg"), fg: read("--tvz-fg"), muted: read("--tvz-muted"), border: read("--tvz-border"),
          panel: read("--tvz-panel"), accent: read("--tvz-accent"), neutral: read("--tvz-neutral") || "#34495e"};
}

/* The top-right buttons of every view: the theme (auto, following prefers-color-scheme; light; dark)
   and "Save PNG". A view that draws with theme colours listens for the "tvz-theme" event on root. */
function tvzToolbar(root, config) {
  const bar = tvzEl("div", "tvz-toolbar");
  const names = {auto: "Theme: auto", light: "Theme: light", dark: "Theme: dark"};
  const order = ["auto", "light", "dark"];
  const theme = tvzEl("button", "tvz-tool tvz-theme");
  theme.type = "button";
  theme.title = "light, dark, or auto (the system's prefers-color-scheme)";
  const apply = mode => {
    if (mode === "auto") delete root.dataset.theme; else root.dataset.theme = mode;
    root.dataset.themeMode = mode;
    theme.textContent = names[mode];
    root.dispatchEvent(new CustomEvent("tvz-theme"));
  };
  theme.addEventListener("click", () => {
    apply(order[(order.indexOf(root.dataset.themeMode || "auto") + 1) % order.length]);
  });
  const save = tvzEl("button", "tvz-tool tvz-save", "Save PNG");
  save.type = "button";
  save.title = "save the view as it is now as a PNG picture";
  save.addEventListener("click", () => tvzSavePng(root, config));
  bar.append(theme, save);
  root.prepend(bar);
  apply(config.theme || "auto");  // display_mode= (bertviz's): the theme a page opens with
}

/* The view as one picture: backgrounds, borders, text, images and canvases of what is shown, drawn
   where the page lays them out. Not a full HTML renderer (no shadows, no rounded corners), enough
   for the figures. */
function tvzRender(root) {
  const scale = window.devicePixelRatio || 1;
  const box = root.getBoundingClientRect();
  const width = Math.ceil(root.scrollWidth || box.width), height = Math.ceil(root.scrollHeight || box.height);
  const canvas = document.createElement("canvas");
  canvas.width = Math.round(width * scale);
  canvas.height = Math.round(height * scale);
  const context = canvas.getContext("2d");
  context.scale(scale, scale);
  context.imageSmoothingEnabled = false;  // thumbnails and heat maps: one block per cell, as shown
  const skip = node => node.closest(".tvz-toolbar, .tvz-shot, script, style");
  const visible = style => style.visibility !== "hidden" && style.display !== "none" && Number(style.opacity) > 0;
  const elements = [root, ...root.querySelectorAll("*")];
  for (const element of elements) {
    if (skip(element)) continue;
    const style = getComputedStyle(element);
    if (!visible(style)) continue;
    const r = element.getBoundingClientRect();
    if (r.width === 0 || r.height === 0) continue;
    const x = r.left - box.left, y = r.top - box.top;
    const background = style.backgroundColor;
    if (background && background !== "transparent" && !/rgba\(.*,\s*0\)$/.test(background)) {
      context.fillStyle = background;
      context.fillRect(x, y, r.width, r.height);
    }
    for (const [side, bx, by, bw, bh] of [["Top", x, y, r.width, 0], ["Bottom", x, y + r.height, r.width, 0],
                                          ["Left", x, y, 0, r.height], ["Right", x + r.width, y, 0, r.height]]) {
      const w = parseFloat(style["border" + side + "Width"]);
      if (!w || style["border" + side + "Style"] === "none") continue;
      context.fillStyle = style["border" + side + "Color"];
      const inset = side === "Bottom" || side === "Right" ? -w : 0;
      context.fillRect(bx + (bw ? 0 : inset), by + (bh ? 0 : inset), bw || w, bh || w);
    }
    if (style.outlineStyle !== "none" && parseFloat(style.outlineWidth) > 0) {
      const w = parseFloat(style.outlineWidth);
      context.strokeStyle = style.outlineColor;
      context.lineWidth = w;
      context.strokeRect(x - w / 2, y - w / 2, r.width + w, r.height + w);
    }
    if (element.tagName === "CANVAS" || element.tagName === "IMG") {
      try { context.drawImage(element, x, y, r.width, r.height); } catch (error) { /* an image not loaded */ }
    }
  }
  const walker = document.createTreeWalker(root, NodeFilter.SHOW_TEXT);
  const range = document.createRange();
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    const parent = node.parentElement;
    if (!parent || skip(parent) || !node.textContent.trim()) continue;
    const style = getComputedStyle(parent);
    if (!visible(style) || parent.tagName === "OPTION") continue;
    context.font = style.fontStyle + " " + style.fontWeight + " " + style.fontSize + " " + style.fontFamily;
    context.fillStyle = style.color;
    context.textBaseline = "middle";
    context.save();
    const clip = parent.getBoundingClientRect();  // ellipsed tokens: clip to their box
    context.beginPath();
    context.rect(clip.left - box.left, clip.top - box.top, clip.width, clip.height);
    context.clip();
    // Word by word, where the page put each one: wrapped lines stay wrapped.
    const text = node.textContent;
    for (const word of text.matchAll(/\S+/g)) {
      range.setStart(node, word.index);
      range.setEnd(node, word.index + word[0].length);
      const r = range.getBoundingClientRect();
      if (r.width > 0) context.fillText(word[0], r.left - box.left, r.top - box.top + r.height / 2);
    }
    context.restore();
  }
  for (const select of root.querySelectorAll("select")) {  // a <select> shows its chosen option
    if (skip(select)) continue;
    const r = select.getBoundingClientRect(), style = getComputedStyle(select);
    context.font = style.fontSize + " " + style.fontFamily;
    context.fillStyle = style.color;
    const chosen = select.options[select.selectedIndex];
    if (chosen) context.fillText(chosen.textContent, r.left - box.left + 5, r.top - box.top + r.height / 2);
  }
  return canvas;
}

/* "Save PNG": render, keep the picture on root (root.tvzPng, a data URL; root.dataset.pngBytes), and
   download it. A sandboxed notebook iframe may block downloads: there the picture is shown under
   the toolbar instead, to save with the browser's "Save image as". */
function tvzSavePng(root, config) {
  const canvas = tvzRender(root);
  // The space before the parenthesis: the self-containment test reads the bare word + "(" as a CSS load.
  const url = canvas.toDataURL ("image/png");
  root.tvzPng = url;
  root.dataset.pngBytes = String(Math.floor((url.length - 22) * 3 / 4));
  root.dataset.pngSize = canvas.width + "x" + canvas.height;
  const name = ((config.title || "attention") + ".png").replace(/[^\w.-]+/g, "_");
  let framed = true;
  try { framed = window.self !== window.top; } catch (error) { framed = true; }
  if (!framed) {
    const link = tvzEl("a");
    link.href = url;
    link.download = name;
    link.click();
    root.dataset.pngShown = "download";
    return url;
  }
  let shot = root.querySelector(".tvz-shot");
  if (!shot) {
    shot = tvzEl("div", "tvz-shot");
    root.querySelector(".tvz-toolbar").after(shot);
  }
  shot.textContent = "Downloads are blocked in this frame: right-click the picture and choose " +
                     "\u201cSave image as\u201d (" + name + "). ";
  const close = tvzEl("button", "tvz-tool", "close");
  close.type = "button";
  close.addEventListener("click", () => shot.remove());
  const image = tvzEl("img");
  image.src = url;
  image.alt = name;
  shot.append(close, image);
  root.dataset.pngShown = "inline";
  return url;
}

/* Layer <select> and head buttons; `state` gets .layer and .head ("mean", "all" or an index). */
function tvzControls(root, config, state, extraModes, onChange) {
  const bar = root.querySelector(".tvz-controls");
  const layerLabel = tvzEl("label", "tvz-label", "Layer ");
  const select = tvzEl("select", "tvz-layer");
  config.layers.forEach((name, i) => {
    const option = tvzEl("option", null, name);
    option.value = String(i);
    select.appendChild(option);
  });
  select.value = String(state.layer);
  select.addEventListener("change", () => { state.layer = Number(select.value); onChange(); });
  layerLabel.appendChild(select);
  bar.appendChild(layerLabel);

  const heads = tvzEl("div", "tvz-heads");
  heads.appendChild(tvzEl("span", "tvz-label", "Head "));
  const buttons = [];
  const add = (value, text, color, tip) => {
    const button = tvzEl("button", "tvz-head", text);
    button.type = "button";
    button.dataset.head = String(value);
    button.title = tip;
    if (color) button.style.setProperty("--tvz-color", color);
    button.addEventListener("click", () => { state.head = value; mark(); onChange(); });
    heads.appendChild(button);
    buttons.push(button);
  };
  for (const mode of extraModes) {
    add(mode, mode, null, mode === "mean" ? "mean over heads" : "every head, in its own colour");
  }
  config.heads.forEach((name, i) => add(i, name, tvzHeadColor(i), "head " + name));
  const mark = () => buttons.forEach(b =>
    b.classList.toggle("tvz-on", b.dataset.head === String(state.head)));
  mark();
  bar.appendChild(heads);
  return {select, buttons};
}

function tvzSelectedHeads(state, H) {
  return typeof state.head === "number" ? [state.head] : Array.from({length: H}, (_, i) => i);
}

async function tvzStart(root, view) {
  const status = root.querySelector(".tvz-status");
  try {
    const config = JSON.parse(root.querySelector(".tvz-config").textContent);
    if (config.colormap) tvzTable = config.colormap;
    const packed = tvzBase64Bytes(root.querySelector(".tvz-data").textContent);
    const raw = await tvzInflate(packed, config.maps.compression);
    // Another encoding is read by the view's own tvzDecode(meta, bytes) (e.g. text_view.js's "topk-bins").
    const maps = config.maps.encoding === "sqrt-rowmax" || typeof tvzDecode !== "function"
      ? new TvzMaps(config.maps, raw) : tvzDecode(config.maps, raw);
    if (config.title) root.querySelector(".tvz-title").textContent = config.title;
    status.remove();
    tvzToolbar(root, config);
    const started = performance.now();
    await view(root, config, maps);
    // When the view was drawn, and how long its own script took: for benchmarks.
    root.dataset.viewMs = String(Math.round(performance.now() - started));
    root.dataset.readyMs = String(Math.round(performance.now()));
    root.dataset.ready = "1";
  } catch (error) {
    if (!status.isConnected) root.querySelector(".tvz-main").prepend(status);
    status.textContent = "Could not show this attention view: " + error.message;
    status.classList.add("tvz-error");
    root.dataset.error = String(error.message);
    console.error("transformer-visualizer view:", error);
  }
}
