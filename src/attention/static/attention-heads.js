/*
 * Small multiples of every head of a model (attention.heads.head_grid): one
 * thumbnail button per head, titled with its scores; a thumbnail opens its
 * head large in a dialog. The numbers come from the package. Loaded once by
 * the book's pages; carried by the widget elsewhere, with its stylesheet in
 * STYLESHEET (the first copy defines window.AttentionHeads).
 */
(function () {
  "use strict";

  if (window.AttentionHeads) {
    window.AttentionHeads.init(document.currentScript);
    return;
  }

  const STYLESHEET = null; // filled in by attention.widgets outside the book

  // The shared helpers (attention-engine.js, loaded first): viridis, a cell's
  // colours (paint), numbers, el.
  const E = window.AttentionEngine;
  const { viridis, paint, format, el } = E;

  let counter = 0;
  const uid = (prefix) => `${prefix}-${++counter}`;

  /** "Layer 0, head 1" and the lines of scores, the labelled one first. */
  function describeHead(entry, decimals, first) {
    const name = `Layer ${entry.layer + first}, head ${entry.head + first}`;
    const scores = Object.entries(entry.scores).map(([kind, v]) => ({
      kind, value: v, text: `${kind} ${format(v, decimals)}`, labelled: kind === entry.label,
    }));
    scores.sort((a, b) => Number(b.labelled) - Number(a.labelled));
    return { name, scores };
  }

  function renderHeads(root, data) {
    const T = data.tokens.length;
    const caption = el("figcaption", { text: data.title });
    const hint = el("p", { className: "attn-heads-hint",
      text: "Select a head to enlarge it." });
    const grid = el("div", { className: "attn-heads-grid", role: "list" });
    const figure = el("figure", { className: "attn-heads" }, [caption, hint, grid]);
    root.append(figure);

    const thumbs = data.heads.map((entry, k) => {
      const { name, scores } = describeHead(entry, data.decimals, data.first);
      const mini = el("span", { className: "attn-heads-mini", "aria-hidden": "true" });
      mini.style.gridTemplateColumns = `repeat(${T}, 1fr)`;
      entry.values.forEach((row, i) => row.forEach((v, j) => {
        const cell = el("span", { className: j > i ? "attn-heads-masked" : null });
        if (j <= i) cell.style.background = viridis(v);
        mini.append(cell);
      }));
      const lines = scores.map((s) => el("span", {
        className: s.labelled ? "attn-heads-label" : "attn-heads-score",
        "data-kind": s.kind, "data-value": String(s.value), text: s.text,
      }));
      const button = el("button", {
        type: "button", className: "attn-heads-thumb", "data-index": String(k),
        "data-label": entry.label, "aria-haspopup": "dialog",
        "aria-label": `${name}: ${scores.map((s) => s.text).join(", ")}`,
      }, [el("span", { className: "attn-heads-name", text: name }), mini, ...lines]);
      button.addEventListener("click", () => open(k));
      grid.append(el("div", { role: "listitem" }, [button]));
      return button;
    });

    // The enlarged head: a modal dialog, so Escape closes it and focus stays inside.
    const titleId = uid("attn-heads-title");
    const heading = el("p", { id: titleId, className: "attn-heads-dialog-title" });
    const labelLine = el("p", { className: "attn-heads-dialog-scores" });
    const close = el("button", { type: "button", className: "attn-heads-close",
      text: "Close" });
    const table = el("table", { className: "attn-heads-table", role: "grid" });
    const readout = el("p", { className: "attn-heads-readout", "aria-live": "polite" });
    const dialog = el("dialog", { className: "attn-heads-dialog", "aria-labelledby": titleId }, [
      el("div", { className: "attn-heads-dialog-bar" }, [heading, close]),
      labelLine,
      el("div", { className: "attn-heads-scroll" }, [table]),
      readout,
    ]);
    figure.append(dialog);
    let current = null;

    function cellLabel(entry, i, j) {
      return j > i ? `query “${data.tokens[i]}”, key “${data.tokens[j]}”: masked`
        : `query “${data.tokens[i]}”, key “${data.tokens[j]}”: ${format(entry.values[i][j], 4)}`;
    }

    function show(td) {
      const entry = data.heads[current];
      const i = Number(td.dataset.row);
      const j = Number(td.dataset.col);
      readout.textContent = cellLabel(entry, i, j);
      readout.dataset.value = td.dataset.value;
    }

    function open(k) {
      current = k;
      const entry = data.heads[k];
      const { name, scores } = describeHead(entry, data.decimals, data.first);
      heading.textContent = name;
      labelLine.replaceChildren(...scores.map((s, n) => el("span", {
        className: s.labelled ? "attn-heads-label" : "attn-heads-score",
        "data-kind": s.kind, "data-value": String(s.value),
        text: (n ? " · " : "") + s.text,
      })));
      table.setAttribute("aria-label", `${name}: attention weights`);
      const headRow = el("tr", {}, [el("th", { scope: "col", className: "attn-heads-corner",
        text: "query ↓ key →" }),
      ...data.tokens.map((tok) => el("th", { scope: "col", text: tok }))]);
      const body = el("tbody");
      entry.values.forEach((row, i) => {
        const tr = el("tr", {}, [el("th", { scope: "row", text: data.tokens[i] })]);
        row.forEach((v, j) => {
          const masked = j > i;
          const td = el("td", {
            role: "gridcell", tabindex: i === 0 && j === 0 ? "0" : "-1",
            "data-row": String(i), "data-col": String(j),
            "data-value": masked ? "masked" : String(v),
            "aria-label": cellLabel(entry, i, j),
            className: masked ? "attn-heads-masked" : null,
            text: masked || T > 12 ? "" : format(v, 2),
            style: masked ? null : paint(v),
          });
          tr.append(td);
        });
        body.append(tr);
      });
      table.replaceChildren(el("thead", {}, [headRow]), body);
      readout.textContent = "";
      dialog.showModal();
      close.focus();
    }

    dialog.addEventListener("close", () => {
      if (current !== null) thumbs[current].focus();
      current = null;
    });
    close.addEventListener("click", () => dialog.close());
    dialog.addEventListener("click", (e) => { if (e.target === dialog) dialog.close(); });
    table.addEventListener("mouseover", (e) => {
      const td = e.target.closest("td");
      if (td) show(td);
    });
    table.addEventListener("focusin", (e) => {
      const td = e.target.closest("td");
      if (td) show(td);
    });
    table.addEventListener("keydown", (e) => {
      const td = e.target.closest("td");
      if (!td) return;
      const i = Number(td.dataset.row);
      const j = Number(td.dataset.col);
      const moves = { ArrowUp: [-1, 0], ArrowDown: [1, 0], ArrowLeft: [0, -1],
        ArrowRight: [0, 1], Home: [0, -j], End: [0, T - 1 - j] };
      if (!(e.key in moves)) return;
      e.preventDefault();
      const [di, dj] = moves[e.key];
      const r = Math.min(T - 1, Math.max(0, i + di));
      const c = Math.min(T - 1, Math.max(0, j + dj));
      const next = table.querySelector(`td[data-row="${r}"][data-col="${c}"]`);
      td.tabIndex = -1;
      next.tabIndex = 0;
      next.focus();
    });
  }

  function init(script) {
    const scopes = [document];
    const own = script && script.getRootNode ? script.getRootNode() : null;
    if (own && own !== document && own.querySelectorAll) scopes.push(own);
    for (const scope of scopes) {
      for (const root of scope.querySelectorAll('.attn-widget[data-attn-kind="heads"]')) {
        if (root.dataset.attnReady) continue;
        E.addStylesheet(STYLESHEET, "heads", "attention-heads.css", scope);
        const data = JSON.parse(root.querySelector("script.attn-data").textContent);
        root.dataset.attnReady = "true";
        for (const fallback of root.querySelectorAll(":scope > .attn-fallback")) fallback.remove();
        renderHeads(root, data);
      }
    }
  }

  // A page that shows a static copy of the grid for readers without scripts
  // (a cell tagged attn-heads-static) hides it once the grid draws.
  document.documentElement.classList.add("attn-heads-ready");
  window.AttentionHeads = { init };
  const script = document.currentScript;
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", () => init(script));
  } else init(script);
})();
