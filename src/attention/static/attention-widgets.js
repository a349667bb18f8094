/*
 * Interactive figures of the attention book: heatmaps and step-throughs.
 *
 * Each figure is a <div class="attn-widget" data-attn-kind="..."> written by
 * the Python package (attention.widgets) with its numbers in a
 * <script type="application/json" class="attn-data">. This script only draws
 * those numbers; it computes none of them. No libraries, no network.
 *
 * The book's pages load this file once. Outside the book (a notebook, any
 * page) every widget's HTML carries a copy of it, with its stylesheet in
 * STYLESHEET: the first copy to run defines window.AttentionWidgets and adds
 * the stylesheet once; every later copy only draws the widgets not drawn yet.
 */
(function () {
  "use strict";

  if (window.AttentionWidgets) {
    window.AttentionWidgets.init(document.currentScript);
    return;
  }

  // The stylesheet's text when a widget carries this script itself
  // (attention.widgets fills it in); null in the book, whose pages link the file.
  const STYLESHEET = null;

  // The shared helpers (attention-engine.js, loaded first): viridis, a cell's
  // colours (paint), numbers as the book prints them, el.
  const E = window.AttentionEngine;
  const { viridis, paint, format, el } = E;

  let counter = 0;
  const uid = (prefix) => `${prefix}-${++counter}`;

  // ---------------------------------------------------------------- heatmap

  function renderHeatmap(root, data) {
    let head = 0;
    let selectedRow = null;
    const caption = el("figcaption", { text: data.title });
    const readout = el("p", { className: "attn-readout", "aria-live": "polite" });
    const table = el("table", { className: "attn-grid", role: "grid", "aria-label": data.title });
    const wrap = el("div", { className: "attn-scroll" }, [table]);
    const figure = el("figure", { className: "attn-heatmap" }, [caption]);

    if (data.heads.length > 1) {
      const id = uid("attn-head");
      const select = el("select", { id, className: "attn-head-select" },
        data.heads.map((name, h) => el("option", { value: String(h), text: name })));
      select.addEventListener("change", () => { head = Number(select.value); draw(); });
      figure.append(el("div", { className: "attn-controls" },
        [el("label", { for: id, text: "Head " }), select]));
    }
    figure.append(wrap, readout);
    root.append(figure);

    const isBlocked = (i, j) => Boolean(data.blocked && data.blocked[i][j]);
    const label = (i, j, v) =>
      `${data.rowAxis} “${data.rows[i]}”, ${data.colAxis} “${data.cols[j]}”: ` +
      (isBlocked(i, j) ? "masked" : format(v, 4));

    function describe(i, j) {
      const v = data.values[head][i][j];
      readout.textContent = isBlocked(i, j) ? label(i, j, v)
        : `${data.rowAxis} “${data.rows[i]}” → ${data.colAxis} “${data.cols[j]}”: ${v}`;
      readout.dataset.value = isBlocked(i, j) ? "masked" : String(v);
    }

    function selectRow(i) {
      selectedRow = selectedRow === i ? null : i;
      for (const tr of table.tBodies[0].rows) {
        tr.classList.toggle("attn-selected", Number(tr.dataset.row) === selectedRow);
      }
      if (selectedRow === null) { readout.textContent = ""; return; }
      const row = data.values[head][selectedRow];
      let top = -1;
      let sum = 0;
      row.forEach((v, j) => {
        if (isBlocked(selectedRow, j)) return;
        sum += v;
        if (top < 0 || v > row[top]) top = j;
      });
      readout.textContent = `${data.rowAxis} “${data.rows[selectedRow]}” selected: ` +
        `its values sum to ${format(sum, 4)}` +
        (top < 0 ? "." : `; the largest is on “${data.cols[top]}”.`);
      readout.dataset.value = "";
    }

    function focusCell(i, j) {
      const cell = table.querySelector(`td[data-row="${i}"][data-col="${j}"]`);
      if (!cell) return;
      for (const c of table.querySelectorAll("td[tabindex='0']")) c.tabIndex = -1;
      cell.tabIndex = 0;
      cell.focus();
    }

    function draw() {
      const values = data.values[head];
      const shown = values.flatMap((row, i) => row.filter((_, j) => !isBlocked(i, j)));
      const low = Math.min(...shown);
      const high = Math.max(...shown);
      const showText = data.cols.length <= 12;
      const headRow = el("tr", {}, [el("th", { scope: "col", className: "attn-corner" },
        [el("span", { className: "attn-axis", text: `${data.rowAxis} ↓ ${data.colAxis} →` })])]);
      for (const name of data.cols) headRow.append(el("th", { scope: "col", text: name }));
      const body = el("tbody");
      values.forEach((row, i) => {
        const tr = el("tr", { "data-row": String(i),
          className: i === selectedRow ? "attn-selected" : null });
        tr.append(el("th", { scope: "row", text: data.rows[i] }));
        row.forEach((v, j) => {
          const blocked = isBlocked(i, j);
          const td = el("td", {
            role: "gridcell", tabindex: i === 0 && j === 0 ? "0" : "-1",
            "data-row": String(i), "data-col": String(j),
            "data-value": blocked ? "masked" : String(v),
            "aria-label": label(i, j, v),
            className: blocked ? "attn-blocked" : null,
            text: showText && !blocked ? format(v, data.decimals) : "",
            style: blocked ? null : paint(high > low ? (v - low) / (high - low) : 0.5),
          });
          tr.append(td);
        });
        body.append(tr);
      });
      table.replaceChildren(el("thead", {}, [headRow]), body);
    }

    table.addEventListener("mouseover", (e) => {
      const td = e.target.closest("td");
      if (td) describe(Number(td.dataset.row), Number(td.dataset.col));
    });
    table.addEventListener("focusin", (e) => {
      const td = e.target.closest("td");
      if (td) describe(Number(td.dataset.row), Number(td.dataset.col));
    });
    table.addEventListener("click", (e) => {
      const cell = e.target.closest("td, tbody th");
      if (cell) selectRow(Number(cell.closest("tr").dataset.row));
    });
    table.addEventListener("keydown", (e) => {
      const td = e.target.closest("td");
      if (!td) return;
      const i = Number(td.dataset.row);
      const j = Number(td.dataset.col);
      const moves = { ArrowUp: [-1, 0], ArrowDown: [1, 0], ArrowLeft: [0, -1], ArrowRight: [0, 1],
        Home: [0, -j], End: [0, data.cols.length - 1 - j] };
      if (e.key in moves) {
        e.preventDefault();
        const [di, dj] = moves[e.key];
        focusCell(Math.min(data.rows.length - 1, Math.max(0, i + di)),
          Math.min(data.cols.length - 1, Math.max(0, j + dj)));
      } else if (e.key === "Enter" || e.key === " ") {
        e.preventDefault();
        selectRow(i);
      }
    });
    draw();
  }

  // ----------------------------------------------------------- step-through

  function renderSteps(root, data) {
    const steps = data.steps;
    let current = 0;
    const tabs = el("div", { className: "attn-step-tabs", role: "tablist",
      "aria-label": "Steps" });
    const panel = el("div", { className: "attn-step-panel", role: "tabpanel", tabindex: "0" });
    const prev = el("button", { type: "button", className: "attn-button", text: "← Previous" });
    const next = el("button", { type: "button", className: "attn-button", text: "Next →" });
    const caption = el("figcaption", { text: `Step through the attention of “${data.tokens[data.query]}”` });
    root.append(el("figure", { className: "attn-steps" }, [
      caption, tabs, panel, el("div", { className: "attn-controls" }, [prev, next]),
    ]));

    const buttons = steps.map((step, k) => {
      const id = uid("attn-step");
      const button = el("button", { type: "button", role: "tab", id,
        className: "attn-step-tab", text: `${k + 1}. ${step.title}` });
      button.addEventListener("click", () => show(k, true));
      tabs.append(button);
      return button;
    });

    function vectorTable(step) {
      const head = el("tr", {}, [el("th", { scope: "col", text: "token" }),
        ...step.columns.map((c) => el("th", { scope: "col", text: c }))]);
      const body = el("tbody");
      if (step.values) {
        step.values.forEach((row, i) => {
          const tr = el("tr", { className: i === data.query ? "attn-selected" : null },
            [el("th", { scope: "row", text: data.tokens[i] })]);
          for (const v of row) {
            tr.append(el("td", { "data-value": v === null ? "-Infinity" : String(v),
              text: format(v, 4) }));
          }
          body.append(tr);
        });
      }
      if (step.extra) {
        const tr = el("tr", { className: "attn-extra" },
          [el("th", { scope: "row", text: step.extra.label })]);
        for (const v of step.extra.values) {
          tr.append(el("td", { "data-value": String(v), text: format(v, 4) }));
        }
        body.append(tr);
      }
      return el("div", { className: "attn-scroll" },
        [el("table", { className: "attn-vector" }, [el("thead", {}, [head]), body])]);
    }

    function show(k, focusTab) {
      current = k;
      buttons.forEach((b, i) => {
        b.setAttribute("aria-selected", String(i === k));
        b.tabIndex = i === k ? 0 : -1;
      });
      panel.setAttribute("aria-labelledby", buttons[k].id);
      const step = steps[k];
      panel.replaceChildren(
        el("p", { className: "attn-step-title", text: `Step ${k + 1} of ${steps.length}: ${step.title}` }),
        el("p", { text: step.text }),
        vectorTable(step),
      );
      prev.disabled = k === 0;
      next.disabled = k === steps.length - 1;
      if (focusTab) buttons[k].focus();
    }

    tabs.addEventListener("keydown", (e) => {
      const moves = { ArrowLeft: -1, ArrowRight: 1, Home: -current, End: steps.length - 1 - current };
      if (!(e.key in moves)) return;
      e.preventDefault();
      show(Math.min(steps.length - 1, Math.max(0, current + moves[e.key])), true);
    });
    prev.addEventListener("click", () => show(Math.max(0, current - 1), false));
    next.addEventListener("click", () => show(Math.min(steps.length - 1, current + 1), false));
    show(0, false);
  }

  // ------------------------------------------------------------------ setup

  const RENDERERS = { heatmap: renderHeatmap, steps: renderSteps };

  /** Draw every widget not drawn yet: in the document, and in the shadow root
   * that holds `script` if there is one. */
  function init(script) {
    const scopes = [document];
    const own = script && script.getRootNode ? script.getRootNode() : null;
    if (own && own !== document && own.querySelectorAll) scopes.push(own);
    for (const scope of scopes) {
      for (const root of scope.querySelectorAll(".attn-widget[data-attn-kind]")) {
        const render = RENDERERS[root.dataset.attnKind];
        if (!render || root.dataset.attnReady) continue;
        E.addStylesheet(STYLESHEET, "widgets", "attention-widgets.css", scope);
        const data = JSON.parse(root.querySelector("script.attn-data").textContent);
        root.dataset.attnReady = "true";
        for (const fallback of root.querySelectorAll(":scope > .attn-fallback")) fallback.remove();
        render(root, data);
      }
    }
  }

  window.AttentionWidgets = { viridis, format, init };
  const script = document.currentScript;
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", () => init(script));
  } else init(script);
})();
