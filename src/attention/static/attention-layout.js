/* The head split's memory layout: view, transpose, strides and contiguity.
 *
 * Draws every .attn-widget[data-attn-kind="layout"] from the JSON that
 * attention.tensor_layout.layout_widget() embeds in it. The page data holds
 * what torch reported at each step; this script recomputes the shapes,
 * strides, contiguity and element-to-memory mapping itself (the rules of
 * view and transpose below) and draws its own numbers. The browser tests hold
 * them equal to torch's. Plain DOM, no libraries.
 *
 * As with the other widgets, the book's page loads this file once; a widget
 * shown anywhere else carries a copy with its stylesheet in STYLESHEET.
 */
(() => {
  "use strict";

  if (window.AttentionLayout) {
    window.AttentionLayout.start();
    return;
  }

  // The stylesheet's text when the widget carries this script itself
  // (attention.widgets fills it in); null in the book, whose page links the file.
  const STYLESHEET = null;

  // ---- Strides, as torch computes them ------------------------------------

  // The shared helpers (attention-engine.js, loaded first): product, the
  // strides of a contiguous tensor, transpose's swap, el.
  const E = window.AttentionEngine;
  const { product, contiguousStrides, el } = E;

  /** torch's is_contiguous(): sizes of 1 put no condition on their stride. */
  function isContiguous(shape, stride) {
    let expected = 1;
    for (let i = shape.length - 1; i >= 0; i--) {
      if (shape[i] === 1) continue;
      if (stride[i] !== expected) return false;
      expected *= shape[i];
    }
    return true;
  }

  /** view: only on memory in order (enough for these steps), same number of elements. */
  function view(t, shape) {
    if (product(shape) !== product(t.shape)) throw new Error(`view(${shape}) changes the size`);
    if (!isContiguous(t.shape, t.stride)) throw new Error("view needs contiguous memory here");
    return { shape, stride: contiguousStrides(shape) };
  }

  const transpose = E.swapDims;

  /** The memory place of every element, in row-major order of the shape. */
  function offsets(t) {
    const out = [];
    const walk = (dim, base) => {
      if (dim === t.shape.length) {
        out.push(base);
        return;
      }
      for (let i = 0; i < t.shape[dim]; i++) walk(dim + 1, base + i * t.stride[dim]);
    };
    walk(0, 0);
    return out;
  }

  /** The four steps for sizes B, T, H, D: x, view, transpose, and view without transpose. */
  function steps({ B, T, H, d_head: D }) {
    const x = { shape: [B, T, H * D], stride: contiguousStrides([B, T, H * D]) };
    const v = view(x, [B, T, H, D]);
    const tr = transpose(v, 1, 2);
    const wrong = view(x, [B, H, T, D]);
    return { x, view: v, transpose: tr, wrong };
  }

  // ---- Drawing ----------------------------------------------------------------

  const tuple = (xs) => `(${xs.join(", ")})`;
  const TOKEN_COLOURS = 6; // .attn-lay-t0 ... t5 in the stylesheet, reused cyclically

  /** What memory place o holds in x = (B, T, H·D): its sequence, token, head and feature. */
  function meaning(o, { T, H, d_head: D }) {
    const C = H * D;
    return {
      b: Math.floor(o / (T * C)),
      t: Math.floor(o / C) % T,
      h: Math.floor((o % C) / D),
      d: o % D,
    };
  }

  function cell(o, sizes, extra) {
    const m = meaning(o, sizes);
    const multi = sizes.B > 1;
    const name = `${multi ? `b${m.b} ` : ""}t${m.t} h${m.h}`;
    return el(
      "span",
      {
        class: `attn-lay-cell attn-lay-t${m.t % TOKEN_COLOURS} attn-lay-h${m.h % 2}`,
        "data-offset": String(o),
        "data-token": String(m.t),
        "data-head": String(m.h),
        title: `memory place ${o}: ${multi ? `sequence ${m.b}, ` : ""}token ${m.t}, head ${m.h}, feature ${m.d}`,
        ...extra,
      },
      el("span", { class: "attn-lay-offset" }, String(o)),
      el("span", { class: "attn-lay-name" }, name),
    );
  }

  const STEP_TEXT = {
    x: "One row of H·d_head features per token: the memory is read in order, token after token.",
    view: "view only re-reads the same memory: each token's row is cut into H groups of d_head. No copy, still contiguous.",
    transpose:
      "transpose(1, 2) swaps the strides of T and H: each head now reads its tokens by jumping over the other heads' features. Same memory, no longer contiguous.",
    wrong:
      "view(B, H, T, d_head) straight away cuts the memory in order: 'head' 0 gets the first T·d_head places, the first tokens' features with their heads one after another. Cells marked ✗ hold a token or head other than their row's and block's.",
  };

  function setup(root) {
    const data = JSON.parse(root.querySelector("script.attn-data").textContent);
    const id = `attn-lay-${Math.random().toString(36).slice(2, 8)}`;
    const select = el(
      "select",
      { id: `${id}-sizes`, "data-lay": "sizes" },
      data.cases.map((c, i) => el("option", { value: String(i) }, c.label)),
    );
    const names = ["x", "view", "transpose", "wrong"];
    const labels = {
      x: "x",
      view: ".view(B, T, H, d_head)",
      transpose: ".transpose(1, 2)",
      wrong: ".view(B, H, T, d_head) alone",
    };
    const radios = names.map((name, i) =>
      el(
        "label",
        { class: "attn-lay-step" },
        el("input", {
          type: "radio",
          name: `${id}-step`,
          value: name,
          "data-lay": "step",
          checked: i === 0,
        }),
        el("code", {}, labels[name]),
      ),
    );
    const readout = el("dl", { class: "attn-lay-readout", "data-lay": "readout" });
    const status = el("p", { class: "attn-lay-status", "aria-live": "polite" });
    const strip = el("div", { class: "attn-lay-strip", "data-lay": "strip" });
    const logical = el("div", { class: "attn-lay-logical", "data-lay": "logical" });
    root.append(
      el(
        "div",
        { class: "attn-lay" },
        el(
          "div",
          { class: "attn-lay-controls" },
          el("label", { for: select.id }, "Sizes "),
          select,
          el("fieldset", {}, el("legend", {}, "Step"), radios),
        ),
        readout,
        status,
        el("p", { class: "attn-lay-heading" }, "Memory, in order (never moved by view or transpose):"),
        el("div", { class: "attn-lay-scroll", tabindex: "0", role: "region", "aria-label": "Memory strip" }, strip),
        el("p", { class: "attn-lay-heading", "data-lay": "logical-heading" }),
        el("div", { class: "attn-lay-scroll", tabindex: "0", role: "region", "aria-label": "The tensor as its shape reads it" }, logical),
      ),
    );

    function draw() {
      const c = data.cases[+select.value];
      const sizes = c.sizes;
      const name = root.querySelector('input[data-lay="step"]:checked').value;
      const t = steps(sizes)[name];
      const offs = offsets(t);
      const contiguous = isContiguous(t.shape, t.stride);
      root.dataset.layStep = name;
      root.dataset.layCase = select.value;
      readout.replaceChildren(
        el("dt", {}, "code"),
        el("dd", {}, el("code", {}, c.steps.find((s) => s.name === name).code)),
        el("dt", {}, ".shape"),
        el("dd", { "data-lay-out": "shape" }, tuple(t.shape)),
        el("dt", {}, ".stride()"),
        el("dd", { "data-lay-out": "stride" }, tuple(t.stride)),
        el("dt", {}, ".is_contiguous()"),
        el("dd", { "data-lay-out": "contiguous" }, contiguous ? "True" : "False"),
      );
      status.textContent = STEP_TEXT[name];
      const B = sizes.B;
      const C = sizes.H * sizes.d_head;
      strip.replaceChildren(
        ...Array.from({ length: B * sizes.T * C }, (_, o) => cell(o, sizes, {})),
      );
      // The logical view: for (B, T, C) one row per token; for 4-D one block per
      // dimension 1, one row per dimension 2.
      const heading = root.querySelector('[data-lay="logical-heading"]');
      const blocks = [];
      let k = 0;
      const mark = (o, block, row) => {
        if (name !== "wrong") return {};
        const m = meaning(o, sizes);
        return m.h !== block || m.t !== row ? { "data-mixed": "true" } : {};
      };
      if (t.shape.length === 3) {
        heading.textContent = `The tensor as its shape ${tuple(t.shape)} reads it: one row per token.`;
        for (let b = 0; b < B; b++) {
          const rows = [];
          for (let i = 0; i < t.shape[1]; i++) {
            const cells = [];
            for (let j = 0; j < t.shape[2]; j++) cells.push(cell(offs[k], sizes, { "data-index": String(k++) }));
            rows.push(el("div", { class: "attn-lay-row" }, el("span", { class: "attn-lay-rowname" }, `[${b}, ${i}]`), cells));
          }
          blocks.push(el("div", { class: "attn-lay-block" }, rows));
        }
      } else {
        const outer = name === "view" ? "token" : "head";
        const inner = name === "view" ? "head" : "token";
        heading.textContent = `The tensor as its shape ${tuple(t.shape)} reads it: one block per ${outer}, one row per ${inner}.`;
        for (let b = 0; b < B; b++) {
          for (let i = 0; i < t.shape[1]; i++) {
            const rows = [];
            for (let j = 0; j < t.shape[2]; j++) {
              const cells = [];
              for (let d = 0; d < t.shape[3]; d++) {
                const o = offs[k];
                const extra = { "data-index": String(k++), ...mark(o, i, j) };
                const c2 = cell(o, sizes, extra);
                if (extra["data-mixed"]) c2.append(el("span", { class: "attn-lay-mixed" }, "✗"));
                cells.push(c2);
              }
              rows.push(el("div", { class: "attn-lay-row" }, el("span", { class: "attn-lay-rowname" }, `${inner} ${j}`), cells));
            }
            blocks.push(
              el(
                "div",
                { class: "attn-lay-block" },
                el("p", { class: "attn-lay-blockname" }, `[${B > 1 ? `${b}, ` : ""}${i}]: ${outer} ${i}`),
                rows,
              ),
            );
          }
        }
      }
      logical.replaceChildren(...blocks);
      root.dataset.layOffsets = offs.join(",");
    }

    select.addEventListener("change", draw);
    root.addEventListener("change", (ev) => {
      if (ev.target.matches('input[data-lay="step"]')) draw();
    });
    draw();
    root.dataset.layReady = "1";
  }

  function start() {
    document.querySelectorAll('.attn-widget[data-attn-kind="layout"]').forEach((root) => {
      if (root.dataset.layStarted) return;
      root.dataset.layStarted = "1";
      E.addStylesheet(STYLESHEET, "layout", "attention-layout.css");
      root.querySelectorAll(":scope > .attn-fallback").forEach((fallback) => fallback.remove());
      setup(root);
    });
  }

  window.AttentionLayout = { start, steps, offsets, isContiguous };
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
