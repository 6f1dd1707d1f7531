/* The model view: a grid of layers x heads, one small heat map each (the thumbnails, block-averaged in
   Python to at most config.thumb cells a side); a click opens that layer and head in the detail panel
   below: the head view (text), the image view (images), or a larger heat map (long texts, no tokens).
   Needs runtime.js, head_view.js and image_view.js. Sets root.dataset.selected ("row,head"), detail
   (what the panel shows) and, in the panel's own root (.tvz-sub), the head or image view's state. */

async function tvzModelView(root, config, thumbs) {
  const rows = config.rows, H = config.heads.length;
  const main = root.querySelector(".tvz-main");
  const CELL = H > 16 ? 44 : 64;
  const grid = tvzEl("div", "tvz-grid");
  main.appendChild(grid);
  const cells = [];  // cells[row][head]

  const header = tvzEl("div", "tvz-grid-row tvz-grid-head");
  header.appendChild(tvzEl("div", "tvz-row-label"));
  config.heads.forEach((name, h) => {
    const label = tvzEl("div", "tvz-col-label", "head " + name);
    label.style.width = CELL + "px";
    label.style.setProperty("--tvz-color", tvzHeadColor(h));
    header.appendChild(label);
  });
  grid.appendChild(header);

  let section, title;
  const lines = [];  // [section, element] of every title and row, for the sentence filter
  rows.forEach((row, r) => {
    if (config.sections && row.section !== section) {
      section = row.section;
      title = tvzEl("div", "tvz-section-title", section);
      grid.appendChild(title);
      lines.push([section, title]);
    }
    const line = tvzEl("div", "tvz-grid-row");
    lines.push([row.section, line]);
    const label = tvzEl("div", "tvz-row-label", row.label);
    label.title = row.label;
    line.appendChild(label);
    const [sq, sk] = row.size;
    // The longer side of the map gets the whole cell; a cross-attention map keeps its aspect.
    const w = sk >= sq ? CELL : Math.max(4, Math.round(CELL * sk / sq));
    const h = sq >= sk ? CELL : Math.max(4, Math.round(CELL * sq / sk));
    cells.push(config.heads.map((name, head) => {
      const holder = tvzEl("button", "tvz-thumb");
      holder.type = "button";
      holder.style.width = holder.style.height = (CELL + 4) + "px";
      holder.dataset.row = String(r);
      holder.dataset.head = String(head);
      const canvas = tvzEl("canvas", "tvz-thumb-map");
      canvas.width = sk;
      canvas.height = sq;
      canvas.style.width = w + "px";
      canvas.style.height = h + "px";
      const top = tvzPaintMap(canvas, thumbs, r, head, sq, sk);
      holder.title = row.label + " \u00b7 head " + name + " (" + row.shape[0] + " x " + row.shape[1] +
        " tokens; largest block mean " + tvzFormat(top) + "): click for detail";
      holder.appendChild(canvas);
      holder.addEventListener("click", () => open(r, head));
      line.appendChild(holder);
      return holder;
    }));
    grid.appendChild(line);
  });

  // bertviz's sentence filter (sentence_b_start): one section of rows at a time, chosen here.
  if (config.choose_section) {
    const label = tvzEl("label", "tvz-label", "Attention ");
    const choice = tvzEl("select", "tvz-select tvz-section");
    config.sections.forEach(name => {
      const option = tvzEl("option", null, name);
      option.value = name;
      choice.appendChild(option);
    });
    const show = name => {
      lines.forEach(([owner, element]) => { element.style.display = owner === name ? "" : "none"; });
      root.dataset.section = name;
    };
    choice.addEventListener("change", () => show(choice.value));
    label.appendChild(choice);
    root.querySelector(".tvz-controls").appendChild(label);
    show(config.sections[0]);
  }

  const down = rows.filter(row => row.block[0] > 1 || row.block[1] > 1);
  const info = tvzEl("div", "tvz-info tvz-grid-note");
  main.appendChild(info);
  root.dataset.downsampled = String(down.length > 0);
  info.textContent = "Each cell is one head's map (queries down, keys across), coloured from 0 to its own " +
    "largest weight. " + (down.length
      ? "Downsampled: " + [...new Set(down.map(row => row.shape.join(" x ") + " tokens averaged over blocks of " +
          row.block.join(" x ") + " to " + row.size.join(" x ") + " cells"))].join("; ") + ". "
      : "Every cell shows the full map (no downsampling). ") + "Click a cell to open it below.";

  const detail = tvzEl("div", "tvz-detail");
  const note = tvzEl("div", "tvz-detail-note", "Click a cell to see that layer and head here.");
  detail.appendChild(note);
  main.appendChild(detail);
  const decoded = {};
  let sub = null;
  root.addEventListener("tvz-theme", () => { if (sub) sub.dispatchEvent(new CustomEvent("tvz-theme")); });

  async function open(r, head) {
    const row = rows[r];
    cells.flat().forEach(cell => cell.classList.remove("tvz-on"));
    cells[r][head].classList.add("tvz-on");
    if (!decoded[r]) {
      const text = root.querySelector("." + row.data).textContent;
      decoded[r] = new TvzMaps(row.maps, await tvzInflate(tvzBase64Bytes(text), row.maps.compression));
    }
    if (sub) sub.remove();
    sub = tvzEl("div", "tvz-sub");
    sub.append(tvzEl("div", "tvz-controls"), tvzEl("div", "tvz-main"), tvzEl("div", "tvz-info"));
    detail.appendChild(sub);
    const shape = row.shape.join(" x ") + " tokens";
    const tokens = row.tokens ? config.token_sets[row.tokens] : null;
    if (row.detail === "head") {
      note.textContent = row.label + ", head " + config.heads[head] + " (" + shape +
        "): the head view of this layer; tick more heads to compare.";
      await tvzHeadView(sub, {layers: [row.label], heads: config.heads, ...tokens,
                              initial: {layer: 0, heads: [head], mean: false}}, decoded[r]);
    } else if (row.detail === "image") {
      note.textContent = row.label + ", head " + config.heads[head] + ": the image view of this layer.";
      await tvzImageView(sub, {layers: [row.label], heads: config.heads, ...config.image,
                               initial: {layer: 0, head: head, query: config.image.start_query}}, decoded[r]);
    } else {
      const [bq, bk] = row.detail_block;
      note.textContent = row.label + ", head " + config.heads[head] + " (" + shape + "): " +
        (bq > 1 || bk > 1 ? "too long to send whole; averaged over blocks of " + bq + " x " + bk +
                            " tokens. " : "") +
        (tokens ? "Hover the map for its tokens." : "Pass tokens= for the head view.");
      tvzHeatmap(sub, row, head, decoded[r], tokens);
    }
    root.dataset.selected = r + "," + head;
    root.dataset.detail = row.detail;
  }

  root.dataset.selected = "";
  root.dataset.detail = "";
}

/* One thumbnail: block means of row `r`, head `head`, scaled to their largest; returns that largest. */
function tvzPaintMap(canvas, maps, r, head, sq, sk) {
  const context = canvas.getContext("2d");
  const pixels = context.createImageData(sk, sq);
  const values = [];
  let top = 0;
  for (let q = 0; q < sq; q++) {
    const row = maps.row(r, [head], q);
    for (let k = 0; k < sk; k++) { values.push(row[k]); top = Math.max(top, row[k]); }
  }
  values.forEach((v, i) => {
    const [red, green, blue] = tvzColormap(top > 0 ? v / top : 0);
    pixels.data.set([red, green, blue, 255], i * 4);
  });
  context.putImageData(pixels, 0, 0);
  return top;
}

/* The detail of a long map: a larger heat map of its block means; hover names the tokens of a block. */
function tvzHeatmap(sub, row, head, maps, tokens) {
  const [Q, K] = [maps.Q, maps.K], [bq, bk] = row.detail_block;
  const side = 512, scale = side / Math.max(Q, K);
  const canvas = tvzEl("canvas", "tvz-heatmap");
  canvas.width = K;
  canvas.height = Q;
  canvas.style.width = Math.round(K * scale) + "px";
  canvas.style.height = Math.round(Q * scale) + "px";
  tvzPaintMap(canvas, maps, 0, head, Q, K);
  const readout = tvzEl("div", "tvz-readout", "\u00a0");
  sub.querySelector(".tvz-main").append(canvas, readout);
  const span = (list, block, i, length) => {
    const first = i * block, last = Math.min(length, first + block) - 1;
    const name = t => list ? JSON.stringify(list[t]) : "";
    return first === last ? "token " + first + " " + name(first)
                          : "tokens " + first + "\u2013" + last + (list ? " (" + name(first) + " \u2026 " + name(last) + ")" : "");
  };
  canvas.addEventListener("mousemove", event => {
    const box = canvas.getBoundingClientRect();
    const k = Math.min(K - 1, Math.floor((event.clientX - box.left) / box.width * K));
    const q = Math.min(Q - 1, Math.floor((event.clientY - box.top) / box.height * Q));
    const weight = maps.row(0, [head], q)[k];
    readout.textContent = "queries: " + span(tokens && tokens.tokens, bq, q, row.shape[0]) + " \u2192 keys: " +
      span(tokens && tokens.key_tokens, bk, k, row.shape[1]) + " \u00b7 mean weight " + tvzFormat(weight);
    sub.dataset.query = String(q);
    sub.dataset.key = String(k);
  });
  sub.dataset.layer = "0";
  sub.dataset.head = String(head);
}

var tvzView = tvzModelView;
