/* The text view: the tokens as prose; hover or click one to shade what it attends to, or what attends to it.
   Needs runtime.js (tvzStart hands this file's tvzDecode the "topk-bins" payload of _topk_codec.py).
   Sets root.dataset.layer / head / direction / focus / pinned / step, and root.tvzShown (the weights
   shaded, one per token shown), so tests and tools can read the state. Shading is written in one pass,
   only to the tokens whose shade changed (their background colour: paint, no layout), never read back. */

function tvzHalf(bits) {
  const sign = bits & 0x8000 ? -1 : 1, exponent = (bits >> 10) & 31, fraction = bits & 1023;
  if (exponent === 0) return sign * fraction * 5.960464477539063e-8;  // subnormal: 2**-24
  if (exponent === 31) return fraction ? NaN : sign * Infinity;
  return sign * (1 + fraction / 1024) * Math.pow(2, exponent - 15);
}

/* Rows of the maps, (layers, heads, queries, keys), from each row's kept weights and binned rest. */
class TvzTopK {
  constructor(meta, raw) {
    const [L, H, Q, K] = meta.shape, k = meta.keep, B = meta.bins, W = meta.bin_width, R = L * H * Q;
    Object.assign(this, {L, H, Q, K, k, B, W, causal: meta.causal});
    const expected = R * k * 3 + R * 4 + R * B;
    if (raw.length !== expected) throw new Error("payload has " + raw.length + " bytes, expected " + expected);
    let at = 0;
    const take = n => raw.subarray(at, at += n);
    const high = take(R * k), low = take(R * k);
    this.index = new Uint16Array(R * k);
    for (let r = 0, p = 0; r < R; r++) {
      let key = 0;
      for (let j = 0; j < k; j++, p++) { key += high[p] * 256 + low[p]; this.index[p] = key; }
    }
    const halves = bytes => {
      const out = new Float32Array(R);
      for (let r = 0; r < R; r++) out[r] = tvzHalf(bytes[2 * r] | (bytes[2 * r + 1] << 8));
      return out;
    };
    this.top = halves(take(2 * R));
    this.codes = take(R * k);
    this.binTop = halves(take(2 * R));
    this.binCodes = take(R * B);
    this.lookup = new Float32Array(meta.levels + 1);
    for (let i = 0; i <= meta.levels; i++) this.lookup[i] = (i / meta.levels) * (i / meta.levels);
    this.counts = new Int32Array(B);
  }
  seen(q) { return this.causal ? q + 1 : this.K; }
  /* Row `q` averaged over `heads`: kept weights where kept, else the bin's sum spread over its other keys. */
  row(layer, heads, q, out) {
    const {k, B, W, counts, lookup} = this, n = heads.length, seen = this.seen(q);
    out.fill(0);
    for (const head of heads) {
      const r = (layer * this.H + head) * this.Q + q, base = r * k, bins = r * B;
      for (let b = 0; b < B; b++) counts[b] = Math.max(0, Math.min(W, seen - b * W));
      for (let j = 0; j < k; j++) { const key = this.index[base + j]; if (key < seen) counts[(key / W) | 0]--; }
      const scale = this.binTop[r] / n, share = b => counts[b] > 0 ? scale * lookup[this.binCodes[bins + b]] / counts[b] : 0;
      for (let b = 0; b * W < seen; b++) {
        const s = share(b);
        if (s === 0) continue;
        for (let key = b * W, end = Math.min(seen, key + W); key < end; key++) out[key] += s;
      }
      const top = this.top[r] / n;
      for (let j = 0; j < k; j++) {
        const key = this.index[base + j];
        if (key < seen) out[key] += top * lookup[this.codes[base + j]] - share((key / W) | 0);
      }
    }
    return out;
  }
  /* Column `key`: how much each query attends to it, averaged over `heads`. */
  column(layer, heads, key, out) {
    const {k, B, W, lookup} = this, n = heads.length, bin = (key / W) | 0;
    out.fill(0);
    for (const head of heads) {
      for (let q = this.causal ? key : 0; q < this.Q; q++) {
        const r = (layer * this.H + head) * this.Q + q, base = r * k, seen = this.seen(q);
        let weight = -1, keptInBin = 0;
        for (let j = 0; j < k; j++) {
          const other = this.index[base + j];
          if (other === key) { weight = this.top[r] * lookup[this.codes[base + j]]; break; }
          if (other < seen && ((other / W) | 0) === bin) keptInBin++;
        }
        if (weight < 0) {
          const count = Math.min(W, seen - bin * W) - keptInBin;
          weight = count > 0 ? this.binTop[r] * lookup[this.binCodes[r * B + bin]] / count : 0;
        }
        out[q] += weight / n;
      }
    }
    return out;
  }
}

function tvzDecode(meta, raw) {
  if (meta.encoding !== "topk-bins") throw new Error("unknown encoding " + meta.encoding);
  return new TvzTopK(meta, raw);
}

async function tvzView(root, config, maps) {
  const N = config.text.length, Q = maps.Q, P = config.prompt_length;
  const generation = P !== null && P < N;
  // With relevance (config.relevance, _relevance.py) the view opens on it; "Show" switches to attention.
  const relevance = config.relevance || null;
  const scores = relevance ? tvzRelevanceScores(root, relevance) : null;
  const state = {layer: config.initial.layer, head: config.initial.head, direction: "row",
                 focus: null, pinned: false, step: generation ? N - P : null,
                 shade: relevance ? "relevance" : "attention"};
  const allHeads = Array.from({length: maps.H}, (_, i) => i);
  const rowOut = new Float32Array(maps.K), columnOut = new Float32Array(Q);

  /* Controls: layer, head (or the mean), direction, and the generation step. */
  const bar = root.querySelector(".tvz-controls");
  const layerLabel = tvzEl("label", "tvz-label", "Layer ");
  const select = tvzEl("select", "tvz-layer");
  config.layers.forEach((name, i) => {
    const option = tvzEl("option", null, name);
    option.value = String(i);
    select.appendChild(option);
  });
  select.value = String(state.layer);
  // Picking a layer, a head or a direction asks for attention: the view shows it.
  select.addEventListener("change", () => { state.layer = Number(select.value); state.shade = "attention"; draw(); });
  layerLabel.appendChild(select);
  const marks = [];
  const group = (label, items, current, pick) => {
    const box = tvzEl("div", "tvz-heads");
    box.appendChild(tvzEl("span", "tvz-label", label));
    const buttons = items.map(([value, text, tip]) => {
      const button = tvzEl("button", "tvz-head", text);
      button.type = "button";
      button.dataset.value = String(value);
      button.title = tip;
      button.addEventListener("click", () => { pick(value); marks.forEach(m => m()); draw(); });
      box.appendChild(button);
      return button;
    });
    const mark = () => buttons.forEach(b => b.classList.toggle("tvz-on", b.dataset.value === String(current())));
    marks.push(mark);
    mark();
    return box;
  };
  const heads = group("Head ", [["mean", "mean", "mean over the heads"],
                                ...config.heads.map((name, i) => [i, name, "head " + name])],
                      () => state.head, value => { state.head = value; state.shade = "attention"; });
  heads.classList.add("tvz-head-buttons");
  const direction = group("Shade ", [["row", "what it attends to", "the weights the token gives (its row)"],
                                     ["column", "what attends to it", "the weights it gets (its column)"]],
                          () => state.direction, value => { state.direction = value; state.shade = "attention"; });
  direction.classList.add("tvz-direction");
  if (relevance) {
    const shown = group("Show ", [["relevance", "relevance", "each token shaded by its relevance score"],
                                  ["attention", "attention", "hover a token to shade what it attends to"]],
                        () => state.shade, value => { state.shade = value; });
    shown.classList.add("tvz-shade");
    bar.appendChild(shown);
    for (const control of [layerLabel, heads, direction]) control.classList.add("tvz-attn-only");
  }
  bar.append(layerLabel, heads, direction);
  let slider = null, stepLabel = null;
  if (generation) {
    const box = tvzEl("label", "tvz-label tvz-stepbox", "Step ");
    slider = tvzEl("input", "tvz-step");
    Object.assign(slider, {type: "range", min: "0", max: String(N - P), step: "1", value: String(state.step)});
    stepLabel = tvzEl("span", "tvz-steplabel");
    box.append(slider, stepLabel);
    bar.appendChild(box);
    slider.addEventListener("input", () => setStep(Number(slider.value)));
  }

  /* The prose: one span per token, its leading space and line break inside it, built in one fragment. */
  const main = root.querySelector(".tvz-main");
  const prose = tvzEl("div", "tvz-prose");
  const shade = config.shade;
  const spans = new Array(N), fragment = document.createDocumentFragment();
  for (let i = 0; i < N; i++) {
    const span = document.createElement("span");
    const text = config.text[i];
    let shown = text.replace(/\n/g, "\u21b5").replace(/\t/g, "\u2192");
    if (shown === "") shown = "\u2205";
    span.className = "tvz-tok" + (P !== null && i >= P ? " tvz-gen" : "") + (i >= Q ? " tvz-norow" : "");
    span.textContent = (config.space[i] === "1" && i > 0 ? " " : "") + shown;
    if (text.includes("\n")) span.appendChild(document.createElement("br"));
    span.title = "#" + i + " " + JSON.stringify(config.raw[i]) +
                 (P !== null ? (i >= P ? " (generated)" : " (prompt)") : "");
    span.tvzIndex = i;
    spans[i] = span;
    fragment.appendChild(span);
  }
  prose.appendChild(fragment);
  const readout = tvzEl("div", "tvz-readout");
  const kept = tvzEl("div", "tvz-kept", config.kept);
  // What the relevance shading is: the method, target and position, and its colour bar.
  const relevanceHead = tvzEl("div", "tvz-rel-head");
  if (relevance) {
    relevanceHead.append(tvzEl("div", "tvz-rel-label", relevance.label),
                         tvzRelevanceLegend(relevance, 260, TVZ_RELEVANCE_TEXT));
  }
  main.append(relevanceHead, readout, prose, kept);
  root.querySelector(".tvz-info").textContent =
    "Hover a token to shade the tokens it attends to (or, with the switch, the tokens that attend to it); " +
    "click to pin it, click again to release. Shade: the square root of each weight over the largest shown." +
    (generation ? " Generated tokens are blue and underlined; the step slider replays the generation, the token " +
                  "generated at that step as query." : "") +
    (relevance ? " \u201cShow\u201d switches between the relevance scores (each token shaded by its own score; " +
                 "the explained position is outlined, dashed) and attention." : "");

  const tokenOf = event => {
    const target = event.target.closest ? event.target.closest(".tvz-tok") : null;
    return target && target.tvzIndex !== undefined ? target.tvzIndex : null;
  };
  prose.addEventListener("mouseover", event => {
    const i = tokenOf(event);
    if (i !== null && !state.pinned && i !== state.focus) { state.focus = i; draw(); }
  });
  prose.addEventListener("mouseleave", () => { if (!state.pinned && state.focus !== null) { state.focus = null; draw(); } });
  prose.addEventListener("click", event => {
    const i = tokenOf(event);
    if (i === null) return;
    state.pinned = !(state.pinned && state.focus === i);
    state.focus = i;
    draw();
  });

  let visible = N;
  function setStep(step) {
    state.step = step;
    const now = P + step;
    for (let i = Math.min(now, visible); i < Math.max(now, visible); i++) spans[i].hidden = i >= now;
    visible = now;
    state.focus = Math.min(now - 1, Q - 1);
    state.pinned = true;
    stepLabel.textContent = step === 0 ? "0 (the prompt)" : step + " of " + (N - P) +
      (now - 1 >= Q ? " (its token was never fed back: the row that predicted it)" : "");
    draw();
  }

  // One colour string per level, made once: a background-color change needs no layout, only paint
  // (a custom property read through color-mix() made Chromium recompute every token's style and layout).
  const palette = Array.from({length: 101}, (_, level) => level === 0 ? "" :
    "rgb(" + shade[0] + " " + shade[1] + " " + shade[2] + " / " + (0.85 * level / 100).toFixed(3) + ")");
  const levels = new Int8Array(N).fill(-1);
  // The relevance colours, made once (clear at a score of 0: the panel shows through).
  const relevanceColors = scores
    ? Array.from(scores, score => tvzRgba(tvzRelevanceColor(relevance, score, TVZ_RELEVANCE_TEXT))) : null;
  const explained = relevance && relevance.position !== null && relevance.position < N ? relevance.position : null;
  let focused = null, painted = false;
  function draw() {
    const showRelevance = state.shade === "relevance";
    root.dataset.shade = state.shade;
    marks.forEach(m => m());
    if (explained !== null) spans[explained].classList.toggle("tvz-explained", showRelevance);
    relevanceHead.hidden = !showRelevance;
    if (showRelevance) return drawRelevance();
    painted = false;
    const heads = state.head === "mean" ? allHeads : [state.head];
    const f = state.focus;
    let values = null;
    if (f !== null && f < Q) {
      values = state.direction === "row" ? maps.row(state.layer, heads, f, rowOut)
                                         : maps.column(state.layer, heads, f, columnOut);
    }
    const count = values ? Math.min(visible, values.length) : 0;
    let largest = 0;
    for (let i = 0; i < count; i++) if (values[i] > largest) largest = values[i];
    for (let i = 0; i < N; i++) {
      const level = i < count && largest > 0 ? Math.round(100 * Math.sqrt(values[i] / largest)) : 0;
      if (level !== levels[i]) { levels[i] = level; spans[i].style.backgroundColor = palette[level]; }
    }
    if (focused !== null) spans[focused].classList.remove("tvz-focus", "tvz-pinned");
    focused = f;
    if (f !== null) spans[f].classList.add("tvz-focus", ...(state.pinned ? ["tvz-pinned"] : []));
    root.tvzShown = values ? values.slice(0, count) : null;
    Object.assign(root.dataset, {layer: String(state.layer), head: String(state.head), direction: state.direction,
                                 focus: f === null ? "" : String(f), pinned: String(state.pinned),
                                 step: state.step === null ? "" : String(state.step)});
    readout.textContent = describe(f, values, count);
  }

  function drawRelevance() {
    const f = state.focus, count = Math.min(visible, scores.length);
    if (!painted) {  // once per switch: hovering only moves the outline
      for (let i = 0; i < N; i++) spans[i].style.backgroundColor = i < scores.length ? relevanceColors[i] : "";
      levels.fill(-1);  // attention repaints every token when it is shown again
      painted = true;
    }
    if (focused !== null) spans[focused].classList.remove("tvz-focus", "tvz-pinned");
    focused = f;
    if (f !== null) spans[f].classList.add("tvz-focus", ...(state.pinned ? ["tvz-pinned"] : []));
    root.tvzShown = scores.slice(0, count);
    Object.assign(root.dataset, {focus: f === null ? "" : String(f), pinned: String(state.pinned),
                                 step: state.step === null ? "" : String(state.step)});
    readout.textContent = describeRelevance(f, count);
  }

  function describeRelevance(f, count) {
    const name = i => "\u201c" + (spans[i].textContent.trim() || "\u2423") + "\u201d #" + i;
    if (f === null) {
      const order = Array.from({length: count}, (_, i) => i).sort((a, b) => scores[b] - scores[a]).slice(0, 5);
      return "Most relevant: " + order.map(i => name(i) + " " + tvzSigned(scores[i])).join(", ") +
             ". Hover a token for its score.";
    }
    if (f >= scores.length) return name(f) + " has no score: it was generated last and never fed back to the model.";
    let rank = 1;
    for (let i = 0; i < count; i++) if (scores[i] > scores[f]) rank++;
    const own = f === explained ? "; the explained position: its own score, left out of the colour scale" : "";
    return name(f) + ": relevance " + tvzSigned(scores[f]) + " (rank " + rank + " of " + count + own + ")";
  }

  function describe(f, values, count) {
    if (f === null) return "Hover or click a token.";
    const name = i => "\u201c" + (spans[i].textContent.trim() || "\u2423") + "\u201d #" + i;
    if (!values) return name(f) + " has no row: it was generated last and never fed back to the model.";
    const order = [];
    for (let i = 0; i < count; i++) {
      if (order.length < 5 || values[i] > values[order[order.length - 1]]) {
        order.push(i);
        order.sort((a, b) => values[b] - values[a]);
        if (order.length > 5) order.pop();
      }
    }
    const where = (state.head === "mean" ? "mean over heads" : "head " + config.heads[state.head]) +
                  ", " + config.layers[state.layer];
    const lead = state.direction === "row" ? name(f) + " attends most to " : name(f) + " is attended most by ";
    return lead + order.map(i => name(i) + " " + tvzFormat(values[i])).join(", ") + " (" + where + ")";
  }

  if (generation) setStep(state.step); else draw();
}
