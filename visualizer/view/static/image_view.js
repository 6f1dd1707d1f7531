/* The image view: hover a patch (or a prefix token such as CLS) to see where it attends; with
   config.relevance a third panel shows the patches by relevance (_relevance.py).
   Needs runtime.js. Sets root.dataset.layer / head / query / pinned for tests and tools, and
   root.tvzRelevance (the scores, one per token) when there is relevance. */

async function tvzImageView(root, config, maps) {
  const [rows, cols] = config.grid;
  const [width, height] = config.panel;
  const prefixNames = config.prefix;
  const P = prefixNames.length;
  const state = {layer: config.initial.layer, head: config.initial.head, query: config.initial.query,
                 pinned: false, sqrt: false};
  // The picture's block: in this view, or in the view around it (the model view's detail panel).
  const picture = root.querySelector(".tvz-image") || root.parentElement.closest(".tvz").querySelector(".tvz-image");
  const imageSource = "data:image/png;base64," + picture.textContent.trim();
  const main = root.querySelector(".tvz-main");
  const panels = tvzEl("div", "tvz-panels");
  main.appendChild(panels);

  const panel = (caption) => {
    const figure = tvzEl("figure", "tvz-panel");
    figure.style.width = width + "px";
    const stage = tvzEl("div", "tvz-stage");
    stage.style.width = width + "px";
    stage.style.height = height + "px";
    const image = tvzEl("img", "tvz-img");
    image.alt = "";
    image.width = width;
    image.height = height;
    image.src = imageSource;
    const [canvas, context] = tvzCanvas("tvz-overlay", width, height);
    stage.append(image, canvas);
    const text = tvzEl("figcaption", null, caption);
    figure.append(stage, text);
    panels.appendChild(figure);
    return {canvas, context, caption: text, figure};
  };
  const query = panel("Query: hover a patch, click to pin it");
  const heat = panel("");
  const relevance = config.relevance || null;
  const scores = relevance ? tvzRelevanceScores(root, relevance) : null;
  const shaded = relevance ? panel("") : null;
  if (relevance) {
    root.tvzRelevance = scores;
    shaded.figure.classList.add("tvz-rel-panel");
    const label = tvzEl("div", "tvz-rel-label", relevance.label);
    shaded.caption.before(tvzRelevanceLegend(relevance, width, TVZ_RELEVANCE_IMAGE), label);
  }

  // The colour bar under the heat panel: 0 .. the row's largest weight over the patches.
  const legend = tvzEl("div", "tvz-legend");
  const [bar, barContext] = tvzCanvas("tvz-colorbar", width, 10);
  const gradient = barContext.createLinearGradient(0, 0, width, 0);
  for (let i = 0; i <= 16; i++) {
    const [r, g, b] = tvzColormap(i / 16);
    gradient.addColorStop(i / 16, "rgb(" + r + "," + g + "," + b + ")");
  }
  barContext.fillStyle = gradient;
  barContext.fillRect(0, 0, width, 10);
  const low = tvzEl("span", "tvz-tick", "0"), middle = tvzEl("span", "tvz-tick");
  const high = tvzEl("span", "tvz-tick");
  const ticks = tvzEl("div", "tvz-ticks");
  ticks.append(low, middle, high);
  legend.append(bar, ticks);
  heat.caption.before(legend);

  // Prefix tokens (CLS, registers) have no place on the image: they get buttons.
  const chips = tvzEl("div", "tvz-prefix");
  chips.appendChild(tvzEl("span", "tvz-label", P ? "Query token " : ""));
  const chipButtons = prefixNames.map((name, index) => {
    const chip = tvzEl("button", "tvz-chip", name);
    chip.type = "button";
    chip.title = "the " + name + " token's attention over the image";
    chip.addEventListener("mouseenter", () => { if (!state.pinned) setQuery(index); });
    chip.addEventListener("click", () => { state.pinned = true; setQuery(index); });
    chips.appendChild(chip);
    return chip;
  });
  const pin = tvzEl("span", "tvz-pin");
  chips.appendChild(pin);
  tvzControls(root, config, state, ["mean"], () => draw());
  // A square-root colour scale lifts the weak weights next to a dominant one (often the patch itself).
  const scaleLabel = tvzEl("label", "tvz-label tvz-scale");
  const scaleBox = tvzEl("input");
  scaleBox.type = "checkbox";
  scaleBox.addEventListener("change", () => { state.sqrt = scaleBox.checked; draw(); });
  scaleLabel.append(scaleBox, document.createTextNode(" \u221a colour scale"));
  root.querySelector(".tvz-controls").append(chips, scaleLabel);
  const info = root.querySelector(".tvz-info");

  const heatCanvas = document.createElement("canvas");
  heatCanvas.width = cols;
  heatCanvas.height = rows;
  const heatContext = heatCanvas.getContext("2d");
  const pixels = heatContext.createImageData(cols, rows);

  function patchAt(event) {
    const box = event.currentTarget.getBoundingClientRect();
    const c = Math.min(cols - 1, Math.max(0, Math.floor((event.clientX - box.left) / box.width * cols)));
    const r = Math.min(rows - 1, Math.max(0, Math.floor((event.clientY - box.top) / box.height * rows)));
    return P + r * cols + c;
  }
  // The relevance panel's patches, drawn once: one block per patch, as computed.
  let relevanceCanvas = null;
  if (relevance) {
    relevanceCanvas = document.createElement("canvas");
    relevanceCanvas.width = cols;
    relevanceCanvas.height = rows;
    const context = relevanceCanvas.getContext("2d"), cells = context.createImageData(cols, rows);
    for (let p = 0; p < rows * cols; p++) {
      const [r, g, b, a] = tvzRelevanceColor(relevance, scores[P + p], TVZ_RELEVANCE_IMAGE);
      cells.data.set([r, g, b, Math.round(255 * a)], p * 4);
    }
    context.putImageData(cells, 0, 0);
  }

  for (const target of shaded ? [query.canvas, heat.canvas, shaded.canvas] : [query.canvas, heat.canvas]) {
    target.addEventListener("mousemove", event => { if (!state.pinned) setQuery(patchAt(event)); });
    target.addEventListener("click", event => {
      state.pinned = !state.pinned;
      setQuery(patchAt(event));
    });
  }

  function setQuery(index) {
    if (index === state.query && root.dataset.pinned === String(state.pinned)) return;
    state.query = index;
    draw();
  }

  function outline(context, index) {
    if (index < P) return;
    const patch = index - P, w = width / cols, h = height / rows;
    const x = (patch % cols) * w, y = Math.floor(patch / cols) * h;
    context.lineWidth = 3;
    context.strokeStyle = "rgba(0, 0, 0, 0.8)";
    context.strokeRect(x + 0.5, y + 0.5, w - 1, h - 1);
    context.lineWidth = 1.5;
    context.strokeStyle = "#00e5ff";
    context.strokeRect(x + 0.5, y + 0.5, w - 1, h - 1);
  }

  function draw() {
    const heads = tvzSelectedHeads(state, maps.H);
    const row = maps.row(state.layer, heads, state.query);
    const patches = row.subarray(P);
    let top = 0;
    for (const w of patches) top = Math.max(top, w);
    for (let p = 0; p < patches.length; p++) {
      const linear = top > 0 ? patches[p] / top : 0;
      const t = state.sqrt ? Math.sqrt(linear) : linear;
      const [r, g, b] = tvzColormap(t);
      pixels.data.set([r, g, b, Math.round(255 * (0.35 + 0.55 * t))], p * 4);
    }
    heatContext.putImageData(pixels, 0, 0);
    heat.context.clearRect(0, 0, width, height);
    heat.context.imageSmoothingEnabled = false;  // one block per patch: what was computed, not a blur
    heat.context.drawImage(heatCanvas, 0, 0, width, height);
    outline(heat.context, state.query);
    query.context.clearRect(0, 0, width, height);
    outline(query.context, state.query);
    if (relevance) drawRelevance();

    high.textContent = tvzFormat(top);
    middle.textContent = tvzFormat(state.sqrt ? top / 4 : top / 2);
    const who = state.query < P ? prefixNames[state.query] + " token"
      : "patch (row " + Math.floor((state.query - P) / cols) + ", col " + ((state.query - P) % cols) + ")";
    const layerName = config.layers[state.layer];
    const headName = state.head === "mean" ? "mean of heads" : "head " + config.heads[state.head];
    heat.caption.textContent = "Attention of the " + who + " · " + layerName + " · " + headName;
    const toPrefix = prefixNames.map((name, i) => name + " " + tvzFormat(row[i])).join(" · ");
    info.textContent = "Query: " + who + " (token " + state.query + ")." +
      (P ? " Weight to " + toPrefix + "." : "") + " Colours run from 0 to the largest weight on a patch.";
    chipButtons.forEach((chip, i) => chip.classList.toggle("tvz-on", i === state.query));
    pin.textContent = state.pinned ? "pinned: click the image to release" : "";
    root.dataset.layer = String(state.layer);
    root.dataset.head = String(state.head);
    root.dataset.query = String(state.query);
    root.dataset.pinned = String(state.pinned);
    root.dataset.scale = state.sqrt ? "sqrt" : "linear";
  }

  function drawRelevance() {
    shaded.context.clearRect(0, 0, width, height);
    shaded.context.imageSmoothingEnabled = false;
    shaded.context.drawImage(relevanceCanvas, 0, 0, width, height);
    outline(shaded.context, state.query);
    const name = i => i < P ? prefixNames[i] : "patch (row " + Math.floor((i - P) / cols) + ", col " + ((i - P) % cols) + ")";
    const off = i => i === relevance.position ? " (the explained token: its own score, left out of the colour scale)" : "";
    const prefix = prefixNames.map((_, i) => name(i) + " " + tvzSigned(scores[i]) + off(i)).join(" · ");
    shaded.caption.textContent = "Relevance of the " + name(state.query) + ": " + tvzSigned(scores[state.query]) +
      off(state.query) + (P && state.query >= P ? ". Prefix tokens: " + prefix + "." : ".");
  }

  draw();
}

var tvzView = tvzImageView;
