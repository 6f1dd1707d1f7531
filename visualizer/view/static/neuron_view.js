/* The neuron view: one head's query vector, a key vector, their elementwise product, its sum and the weight.
   Needs runtime.js (tvzStart hands this file's tvzDecode the "neuron-f32" payload of _neuron_view.py).
   Click a query token (top line); hover or click a key token (bottom line; a click pins it). Sets
   root.dataset.query / key / dot / logit / weight / pinned, so tests and tools can read the state. */

function tvzDecode(meta, raw) {
  if (meta.encoding !== "neuron-f32") throw new Error("unknown encoding " + meta.encoding);
  const [Q, K, D] = meta.shape, extra = {none: 0, keys: K, matrix: Q * K}[meta.mask];
  if (extra === undefined) throw new Error("unknown mask " + meta.mask);
  const expected = 4 * (Q * D + K * D + extra);
  if (raw.length !== expected) throw new Error("payload has " + raw.length + " bytes, expected " + expected);
  const floats = new Float32Array(raw.buffer.slice(raw.byteOffset, raw.byteOffset + raw.length));
  return {Q, K, D, mask: meta.mask, causal: meta.causal, query: floats.subarray(0, Q * D),
          key: floats.subarray(Q * D, (Q + K) * D), bias: extra ? floats.subarray((Q + K) * D) : null};
}

/* A diverging colour for v in [-1, 1]: blue below zero, red above, the panel colour at zero. */
function tvzDiverging(v) {
  const t = Math.round(Math.min(1, Math.abs(v)) * 100);
  return "color-mix(in srgb, " + (v < 0 ? "#2166ac" : "#b2182b") + " " + t + "%, var(--tvz-panel, #fff))";
}

async function tvzView(root, config, data) {
  const {Q, K, D} = data, scale = config.scale;
  const state = {query: config.initial.query, key: config.initial.key, pinned: true};
  root.querySelector(".tvz-controls").appendChild(tvzEl("span", "tvz-label",
    config.layer + " \u00b7 head " + config.head + " of " + config.heads +
    (config.key_head !== config.head ? " (key head " + config.key_head + ")" : "") +
    " \u00b7 head dim " + D + " \u00b7 scale " + tvzFormat(scale)));

  const main = root.querySelector(".tvz-main");
  const line = (label, side, count) => {
    const box = tvzEl("div", "tvz-nv-line");
    box.appendChild(tvzEl("div", "tvz-nv-label", label));
    const prose = tvzEl("div", "tvz-prose tvz-nv-" + side);
    const spans = [];
    const fragment = document.createDocumentFragment();
    for (let i = 0; i < count; i++) {
      const span = tvzEl("span", "tvz-tok", (config.space[i] === "1" && i > 0 ? " " : "") +
                         (config.text[i].replace(/\n/g, "\u21b5") || "\u2205"));
      span.title = "#" + i + " " + JSON.stringify(config.raw[i]);
      span.tvzIndex = i;
      spans.push(span);
      fragment.appendChild(span);
    }
    prose.appendChild(fragment);
    box.appendChild(prose);
    main.appendChild(box);
    return [prose, spans];
  };
  const [queryLine, querySpans] = line("Query", "q", Q);
  const [keyLine, keySpans] = line("Key", "k", K);
  keyLine.style.setProperty("--tvz-shade", "#e35933");

  const panel = tvzEl("div", "tvz-vectors");
  const strips = {};
  for (const [name, label] of [["q", "query q"], ["k", "key k"], ["p", "q \u00d7 k"]]) {
    const row = tvzEl("div", "tvz-vrow");
    row.appendChild(tvzEl("div", "tvz-vlabel", label));
    const cells = tvzEl("div", "tvz-cells");
    cells.style.setProperty("--tvz-cell", Math.max(8, Math.min(24, Math.floor(960 / D) - 1)) + "px");
    strips[name] = Array.from({length: D}, () => cells.appendChild(tvzEl("span", "tvz-cell")));
    row.appendChild(cells);
    panel.appendChild(row);
  }
  const sum = tvzEl("div", "tvz-sum");
  panel.appendChild(sum);
  main.appendChild(panel);
  root.querySelector(".tvz-info").textContent =
    "Click a query token (top), then hover or click key tokens (bottom, shaded by the query's attention " +
    "weights). Cells: each dimension of the query, the key and their product (red positive, blue negative, " +
    "scaled to the largest magnitude in the strip; hover a cell for its value). The product's sum times the " +
    "scale, plus the mask, is the logit; the softmax of the row's logits gives the weight.";

  const tokenOf = event => {
    const target = event.target.closest ? event.target.closest(".tvz-tok") : null;
    return target ? target.tvzIndex : null;
  };
  queryLine.addEventListener("click", event => {
    const i = tokenOf(event);
    if (i === null || i === undefined) return;
    state.query = i;
    draw();
  });
  keyLine.addEventListener("mouseover", event => {
    const i = tokenOf(event);
    if (i !== null && i !== undefined && !state.pinned && i !== state.key) { state.key = i; draw(); }
  });
  keyLine.addEventListener("click", event => {
    const i = tokenOf(event);
    if (i === null || i === undefined) return;
    state.pinned = !(state.pinned && state.key === i);
    state.key = i;
    draw();
  });

  const logits = new Float64Array(K);
  /* The additive mask of (query i, key j): "none" (with or without the causal mask), "keys" (one
     value per key, the same for every row, plus the causal mask) or "matrix". */
  function mask(i, j) {
    if (data.mask === "matrix") return data.bias[i * K + j];
    if (data.causal && j > i) return -Infinity;
    return data.mask === "keys" ? data.bias[j] : 0;
  }
  function row(i) {
    let top = -Infinity;
    for (let j = 0; j < K; j++) {
      let dot = 0;
      for (let d = 0; d < D; d++) dot += data.query[i * D + d] * data.key[j * D + d];
      logits[j] = dot * scale + mask(i, j);
      if (logits[j] > top) top = logits[j];
    }
    const weights = new Float64Array(K);
    if (top === -Infinity) return weights;  // every key hidden: a zero row, as the kernels give
    let total = 0;
    for (let j = 0; j < K; j++) { weights[j] = Math.exp(logits[j] - top); total += weights[j]; }
    for (let j = 0; j < K; j++) weights[j] /= total;
    return weights;
  }
  function strip(cells, values) {
    let largest = 0;
    for (const v of values) largest = Math.max(largest, Math.abs(v));
    values.forEach((v, d) => {
      cells[d].style.background = tvzDiverging(largest > 0 ? v / largest : 0);
      cells[d].title = "dim " + d + ": " + v.toPrecision(5);
    });
  }

  let shownQuery = null, shownKey = null;
  function draw() {
    const i = state.query, j = state.key;
    const weights = row(i);
    let largest = 0;
    for (let k = 0; k < K; k++) largest = Math.max(largest, weights[k]);
    keySpans.forEach((span, k) => span.style.setProperty("--tvz-w",
      String(largest > 0 ? Math.round(100 * Math.sqrt(weights[k] / largest)) : 0)));
    if (shownQuery !== null) querySpans[shownQuery].classList.remove("tvz-focus", "tvz-pinned");
    if (shownKey !== null) keySpans[shownKey].classList.remove("tvz-focus", "tvz-pinned");
    querySpans[i].classList.add("tvz-focus", "tvz-pinned");
    keySpans[j].classList.add("tvz-focus", ...(state.pinned ? ["tvz-pinned"] : []));
    shownQuery = i;
    shownKey = j;
    const q = Array.from(data.query.subarray(i * D, (i + 1) * D));
    const k = Array.from(data.key.subarray(j * D, (j + 1) * D));
    const product = q.map((v, d) => v * k[d]);
    strip(strips.q, q);
    strip(strips.k, k);
    strip(strips.p, product);
    let dot = 0;
    for (const v of product) dot += v;
    const bias = mask(i, j), logit = dot * scale + bias;
    const name = t => "\u201c" + (config.text[t].trim() || "\u2423") + "\u201d #" + t;
    sum.textContent = "query " + name(i) + ", key " + name(j) + ": q \u00b7 k = \u03a3 q \u00d7 k = " +
      dot.toPrecision(6) + "; \u00d7 scale " + tvzFormat(scale) + " = " + (dot * scale).toPrecision(6) +
      (bias !== 0 ? (bias === -Infinity ? "; masked (\u2212\u221e)" : "; + mask " + bias.toPrecision(4)) : "") +
      "; logit " + logit.toPrecision(6) + " \u2192 softmax over the row: weight " + weights[j].toPrecision(6);
    Object.assign(root.dataset, {query: String(i), key: String(j), pinned: String(state.pinned),
                                 dot: String(dot), logit: String(logit), weight: String(weights[j])});
  }
  draw();
}
