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
  t = Math.min(1, Math.max(0, t)) * (tvzTable.length - 1);
  const i = Math.min(tvzTable.length - 2, Math.floor(t)), f = t - i;
  const a = tvzTable[i], b = tvzTable[i + 1];
  return [a[0] + (b[0] - a[0]) * f, a[1] + (b[1] - a[1]) * f, a[2] + (b[2] - a[2]) * f];
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
    await view(root, config, maps);
    root.dataset.ready = "1";
  } catch (error) {
    if (!status.isConnected) root.querySelector(".tvz-main").prepend(status);
    status.textContent = "Could not show this attention view: " + error.message;
    status.classList.add("tvz-error");
    root.dataset.error = String(error.message);
    console.error("transformer-visualizer view:", error);
  }
}
