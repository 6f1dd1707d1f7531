/* The head view: query tokens on the left, key tokens on the right, one line per weight.
   Needs runtime.js. Sets root.dataset.layer / head / hover / pinned so tests and tools can read the state.
   Hovering a token shows its lines; a click pins it (the lines stay when the mouse leaves), a click on
   the pinned token releases it, a click on another token pins that one. */

async function tvzView(root, config, maps) {
  const ROW = 22, GAP = 200, MIN_WEIGHT = 0.005;
  const state = {layer: config.initial.layer, head: config.initial.head, hover: null, pinned: false};
  const queries = config.tokens, keys = config.key_tokens || config.tokens;
  const main = root.querySelector(".tvz-main");
  const box = tvzEl("div", "tvz-headview");
  const left = tvzEl("div", "tvz-col tvz-left"), right = tvzEl("div", "tvz-col tvz-right");
  const [canvas, context] = tvzCanvas("tvz-lines", GAP, Math.max(queries.length, keys.length) * ROW);
  box.append(left, canvas, right);
  main.appendChild(box);

  const column = (parent, tokens, side) => tokens.map((token, index) => {
    const cell = tvzEl("div", "tvz-token");
    cell.style.height = ROW + "px";
    const text = tvzEl("span", "tvz-text", token === "" ? "\u00a0" : token);
    cell.title = token;
    const weight = tvzEl("span", "tvz-weight");
    if (side === "q") cell.append(weight, text); else cell.append(text, weight);
    cell.addEventListener("mouseenter", () => { if (!state.pinned) { state.hover = {side, index}; draw(); } });
    cell.addEventListener("mouseleave", () => { if (!state.pinned) { state.hover = null; draw(); } });
    cell.addEventListener("click", () => {
      const same = state.hover && state.hover.side === side && state.hover.index === index;
      state.pinned = !(state.pinned && same);
      state.hover = {side, index};
      draw();
    });
    parent.appendChild(cell);
    return cell;
  });
  const leftCells = column(left, queries, "q"), rightCells = column(right, keys, "k");
  tvzControls(root, config, state, ["all", "mean"], () => draw());
  root.querySelector(".tvz-info").textContent =
    "Each line joins a query (left) to a key (right); its opacity is the attention weight. " +
    "Hover a token to see only its lines and the weights; click to pin it, click it again to release.";

  const colorOf = head => state.head === "mean" ? "#34495e" : tvzHeadColor(head);

  function line(q, k, weight) {
    context.globalAlpha = Math.min(1, weight);
    context.beginPath();
    context.moveTo(0, (q + 0.5) * ROW);
    context.lineTo(GAP, (k + 0.5) * ROW);
    context.stroke();
  }

  function draw() {
    const heads = tvzSelectedHeads(state, maps.H);
    // "mean" draws one set of lines from the mean map; the others draw each chosen head in its colour.
    const groups = state.head === "mean" ? [heads] : heads.map(h => [h]);
    const hover = state.hover;
    context.clearRect(0, 0, GAP, canvas.height);
    context.lineWidth = 2;
    for (const group of groups) {
      context.strokeStyle = colorOf(group[0]);
      if (hover && hover.side === "k") {
        const weights = maps.column(state.layer, group, hover.index);
        weights.forEach((w, q) => { if (w >= MIN_WEIGHT) line(q, hover.index, w); });
        continue;
      }
      const rows = hover ? [hover.index] : queries.map((_, q) => q);
      for (const q of rows) {
        const weights = maps.row(state.layer, group, q);
        weights.forEach((w, k) => { if (w >= MIN_WEIGHT) line(q, k, w); });
      }
    }
    context.globalAlpha = 1;
    shade(heads);
    root.dataset.layer = String(state.layer);
    root.dataset.head = String(state.head);
    root.dataset.hover = hover ? hover.side + hover.index : "";
    root.dataset.pinned = String(state.pinned);
    for (const cell of leftCells.concat(rightCells)) cell.classList.remove("tvz-pinned");
    if (state.pinned && hover) (hover.side === "q" ? leftCells : rightCells)[hover.index].classList.add("tvz-pinned");
  }

  /* Under hover, the other column shows the (mean over the chosen heads) weight of each token. */
  function shade(heads) {
    const hover = state.hover;
    const color = typeof state.head === "number" ? tvzHeadColor(state.head) : "#34495e";
    for (const cells of [leftCells, rightCells]) {
      cells.forEach(cell => {
        cell.classList.remove("tvz-hover");
        cell.style.removeProperty("--tvz-shade");
        cell.querySelector(".tvz-weight").textContent = "";
      });
    }
    if (!hover) return;
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

  draw();
}
