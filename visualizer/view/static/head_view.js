/* The head view: query tokens on the left, key tokens on the right, one line per weight.
   Needs runtime.js. Sets root.dataset.layer / head / heads / hover / pinned / section so tests and tools
   can read the state (head: "mean", "all", one index, or the ticked indices joined by commas).
   Head buttons are toggles: tick any subset (each head in its own colour); a double-click solos a head;
   "mean" draws the mean over the ticked heads. Hovering a token shows its lines; a click pins it, a click
   on the pinned token releases it. An encoder-decoder capture brings `config.sections` (encoder self,
   decoder self, cross), each with its own tokens and maps (payload `data`, decoded when first chosen). */

async function tvzHeadView(root, config, maps) {
  const ROW = 22, GAP = 200, MIN_WEIGHT = 0.005;
  const H = config.heads.length;
  const state = {layer: config.initial.layer, selected: config.initial.heads.slice(), mean: config.initial.mean,
                 hover: null, pinned: false, section: config.initial.section || 0};
  const sections = config.sections || [{name: null, layers: config.layers, tokens: config.tokens,
    raw_tokens: config.raw_tokens, key_tokens: config.key_tokens, raw_key_tokens: config.raw_key_tokens}];
  const decoded = {0: maps};
  const main = root.querySelector(".tvz-main"), bar = root.querySelector(".tvz-controls");
  let view = null;  // what mount() builds for the current section

  // Section (encoder self / decoder self / cross), layer and head controls.
  let sectionSelect = null;
  if (sections.length > 1) {
    const label = tvzEl("label", "tvz-label", "Attention ");
    sectionSelect = tvzEl("select", "tvz-select tvz-section");
    sections.forEach((section, i) => {
      const option = tvzEl("option", null, section.name);
      option.value = String(i);
      sectionSelect.appendChild(option);
    });
    sectionSelect.value = String(state.section);
    sectionSelect.addEventListener("change", async () => {
      state.section = Number(sectionSelect.value);
      state.layer = Math.min(state.layer, sections[state.section].layers.length - 1);
      state.hover = null;
      state.pinned = false;
      await mount();
    });
    label.appendChild(sectionSelect);
    bar.appendChild(label);
  }
  const layerLabel = tvzEl("label", "tvz-label", "Layer ");
  const layerSelect = tvzEl("select", "tvz-layer");
  layerSelect.addEventListener("change", () => { state.layer = Number(layerSelect.value); draw(); });
  layerLabel.appendChild(layerSelect);
  bar.appendChild(layerLabel);

  const headBox = tvzEl("div", "tvz-heads");
  headBox.appendChild(tvzEl("span", "tvz-label", "Heads "));
  const modeButton = (text, tip, act) => {
    const button = tvzEl("button", "tvz-head tvz-mode", text);
    button.type = "button";
    button.dataset.head = text;
    button.title = tip;
    button.addEventListener("click", () => { act(); draw(); });
    headBox.appendChild(button);
    return button;
  };
  const allButton = modeButton("all", "tick every head (each in its own colour)", () => {
    state.selected = Array.from({length: H}, (_, i) => i);
    state.mean = false;
  });
  const meanButton = modeButton("mean", "one set of lines: the mean over the ticked heads", () => {
    state.mean = !state.mean;
  });
  const headButtons = config.heads.map((name, i) => {
    const button = tvzEl("button", "tvz-head", name);
    button.type = "button";
    button.dataset.head = String(i);
    button.title = "head " + name + ": click to tick or untick, double-click to show it alone";
    button.style.setProperty("--tvz-color", tvzHeadColor(i));
    button.addEventListener("click", () => {
      const at = state.selected.indexOf(i);
      if (at >= 0) state.selected.splice(at, 1); else state.selected.push(i);
      state.selected.sort((a, b) => a - b);
      draw();
    });
    button.addEventListener("dblclick", () => { state.selected = [i]; state.mean = false; draw(); });
    headBox.appendChild(button);
    return button;
  });
  bar.appendChild(headBox);
  root.querySelector(".tvz-info").textContent =
    "Each line joins a query (left) to a key (right); its opacity is the attention weight, its colour the " +
    "head's. Click heads to tick or untick them, double-click one to show it alone. Hover a token to see " +
    "only its lines and the weights; click to pin it, click it again to release. Hover a token for its raw piece.";

  function headState() {
    if (state.mean) return "mean";
    if (state.selected.length === 1) return String(state.selected[0]);
    if (state.selected.length === H) return "all";
    return state.selected.join(",");
  }

  async function mount() {
    const index = state.section, section = sections[index];
    if (!decoded[index]) {
      const meta = section.maps, text = root.querySelector("." + section.data).textContent;
      decoded[index] = new TvzMaps(meta, await tvzInflate(tvzBase64Bytes(text), meta.compression));
    }
    const sectionMaps = decoded[index];
    const queries = section.tokens, keys = section.key_tokens || section.tokens;
    const rawQueries = section.raw_tokens || queries;
    const rawKeys = section.raw_key_tokens || (section.key_tokens ? keys : rawQueries);
    layerSelect.replaceChildren(...section.layers.map((name, i) => {
      const option = tvzEl("option", null, name);
      option.value = String(i);
      return option;
    }));
    layerSelect.value = String(state.layer);
    main.replaceChildren();
    const box = tvzEl("div", "tvz-headview");
    const left = tvzEl("div", "tvz-col tvz-left"), right = tvzEl("div", "tvz-col tvz-right");
    const [canvas, context] = tvzCanvas("tvz-lines", GAP, Math.max(queries.length, keys.length) * ROW);
    box.append(left, canvas, right);
    main.appendChild(box);
    const column = (parent, tokens, raws, side) => tokens.map((token, i) => {
      const cell = tvzEl("div", "tvz-token");
      cell.style.height = ROW + "px";
      const text = tvzEl("span", "tvz-text", token === "" ? "\u00a0" : token);
      cell.title = raws[i] === token ? token : token + "  (token: " + JSON.stringify(raws[i]) + ")";
      cell.dataset.raw = raws[i];
      const weight = tvzEl("span", "tvz-weight");
      if (side === "q") cell.append(weight, text); else cell.append(text, weight);
      cell.addEventListener("mouseenter", () => { if (!state.pinned) { state.hover = {side, index: i}; draw(); } });
      cell.addEventListener("mouseleave", () => { if (!state.pinned) { state.hover = null; draw(); } });
      cell.addEventListener("click", () => {
        const same = state.hover && state.hover.side === side && state.hover.index === i;
        state.pinned = !(state.pinned && same);
        state.hover = {side, index: i};
        draw();
      });
      parent.appendChild(cell);
      return cell;
    });
    view = {maps: sectionMaps, queries, keys, canvas, context,
            leftCells: column(left, queries, rawQueries, "q"), rightCells: column(right, keys, rawKeys, "k")};
    draw();
  }

  /* Lines are batched by opacity (LEVELS steps): one path and one stroke per step and head, not one
     per line, so a few hundred tokens (tens of thousands of lines) still draw at once. */
  const LEVELS = 24, CHUNK = Number(root.dataset.chunk || 64);
  function strokeLines(context, lines) {
    lines.forEach((path, level) => {
      if (!path.length) return;
      context.globalAlpha = level / LEVELS;
      for (let start = 0; start < path.length; start += 2 * CHUNK) {  // long paths stroke slowly
        context.beginPath();
        for (let i = start; i < Math.min(path.length, start + 2 * CHUNK); i += 2) {
          context.moveTo(0, (path[i] + 0.5) * ROW);
          context.lineTo(GAP, (path[i + 1] + 0.5) * ROW);
        }
        context.stroke();
      }
    });
  }

  function draw() {
    if (!view) return;
    const {maps, queries, canvas, context} = view;
    const heads = state.selected;
    const neutral = tvzTheme(root).neutral;
    // "mean" draws one set of lines from the mean map; otherwise each ticked head in its colour.
    const groups = heads.length === 0 ? [] : state.mean ? [heads] : heads.map(h => [h]);
    const hover = state.hover;
    let drawn = 0;
    context.clearRect(0, 0, GAP, canvas.height);
    context.lineWidth = 2;
    for (const group of groups) {
      context.strokeStyle = state.mean ? neutral : tvzHeadColor(group[0]);
      const lines = Array.from({length: LEVELS + 1}, () => []);
      const add = (q, k, w) => {
        if (w < MIN_WEIGHT) return;
        lines[Math.max(1, Math.round(Math.min(1, w) * LEVELS))].push(q, k);
        drawn++;
      };
      if (hover && hover.side === "k") {
        maps.column(state.layer, group, hover.index).forEach((w, q) => add(q, hover.index, w));
      } else {
        const rows = hover ? [hover.index] : queries.map((_, q) => q);
        for (const q of rows) maps.row(state.layer, group, q).forEach((w, k) => add(q, k, w));
      }
      strokeLines(context, lines);
    }
    context.globalAlpha = 1;
    shade(heads, neutral);
    headButtons.forEach((button, i) => button.classList.toggle("tvz-on", state.selected.includes(i)));
    allButton.classList.toggle("tvz-on", state.selected.length === H && !state.mean);
    meanButton.classList.toggle("tvz-on", state.mean);
    layerSelect.value = String(state.layer);
    Object.assign(root.dataset, {
      layer: String(state.layer), head: headState(), heads: state.selected.join(","), lines: String(drawn),
      hover: hover ? hover.side + hover.index : "", pinned: String(state.pinned), section: String(state.section),
    });
    const {leftCells, rightCells} = view;
    for (const cell of leftCells.concat(rightCells)) cell.classList.remove("tvz-pinned");
    if (state.pinned && hover) (hover.side === "q" ? leftCells : rightCells)[hover.index].classList.add("tvz-pinned");
  }

  /* Under hover, the other column shows the (mean over the ticked heads) weight of each token. */
  function shade(heads, neutral) {
    const {maps, leftCells, rightCells} = view, hover = state.hover;
    const color = heads.length === 1 ? tvzHeadColor(heads[0]) : neutral;
    for (const cells of [leftCells, rightCells]) {
      cells.forEach(cell => {
        cell.classList.remove("tvz-hover");
        cell.style.removeProperty("--tvz-shade");
        cell.querySelector(".tvz-weight").textContent = "";
      });
    }
    if (!hover || heads.length === 0) return;
    const [own, other] = hover.side === "q" ? [leftCells, rightCells] : [rightCells, leftCells];
    own[hover.index].classList.add("tvz-hover");
    const weights = hover.side === "q" ? maps.row(state.layer, heads, hover.index)
                                       : maps.column(state.layer, heads, hover.index);
    other.forEach((cell, i) => {
      const w = weights[i];
      cell.style.setProperty("--tvz-shade", "color-mix(in srgb, " + color + " " +
                             Math.round(Math.min(1, w) * 85) + "%, transparent)");
      cell.querySelector(".tvz-weight").textContent = tvzFormat(w);
    });
  }

  root.addEventListener("tvz-theme", () => draw());
  await mount();
}

var tvzView = tvzHeadView;
