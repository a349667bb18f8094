/* The in-page engine: the arithmetic and DOM helpers every widget script uses.
 *
 * Defines window.AttentionEngine once. The book's pages load this file before
 * the widget scripts (conf.py); a notebook output carries a copy ahead of its
 * own script (attention.widgets), and a copy that finds an engine leaves it.
 * The maths is the package's: a stable softmax with masked_softmax's guard
 * (a row blocked everywhere gets zero weights, not torch's 0 / 0 = NaN), the
 * causal mask (true = blocked), scaling by 1 / sqrt(d_k), inverted dropout.
 * Matrices are arrays of rows. tests/site/test_engine.py holds it to the
 * package. No libraries, no network.
 */
(() => {
  "use strict";

  if (window.AttentionEngine) return;

  // ---- Arithmetic ----------------------------------------------------------

  const range = (n) => Array.from({ length: n }, (_, i) => i);
  const sum = (xs) => xs.reduce((a, b) => a + b, 0);
  const product = (xs) => xs.reduce((a, b) => a * b, 1);

  /** a · b for two vectors of one length. */
  const dot = (a, b) => a.reduce((total, v, i) => total + v * b[i], 0);

  /** (n, k) @ (k, m) -> (n, m). */
  const matmul = (A, B) =>
    A.map((row) => B[0].map((_, k) => row.reduce((total, a, i) => total + a * B[i][k], 0)));

  /** Stable softmax as torch computes it: a row that is -inf everywhere gives NaN (0 / 0). */
  function softmaxRaw(row) {
    const max = Math.max(...row);
    const e = row.map((s) => Math.exp(s - max));
    const total = sum(e);
    return e.map((v) => v / total);
  }

  /** The package's masked_softmax: as above, but a row masked everywhere gets all-zero weights. */
  const softmax = (row) => (Math.max(...row) === -Infinity ? row.map(() => 0) : softmaxRaw(row));

  /** Scores divided by sqrt(d_k). */
  const scale = (S, dk) => S.map((row) => row.map((v) => v / Math.sqrt(dk)));

  /** The (T_q, T_k) causal mask (T_k = T_q unless given): true where key j comes after query i (blocked). */
  const causalMask = (tq, tk = tq) => range(tq).map((i) => range(tk).map((j) => j > i));

  /** -Infinity where the mask is true. */
  const maskScores = (S, mask) => S.map((row, i) => row.map((v, j) => (mask[i][j] ? -Infinity : v)));

  /** Inverted dropout with a given keep pattern: kept weights divided by 1 - p, dropped ones 0. */
  const dropout = (W, keep, p) =>
    W.map((row, i) => row.map((w, j) => (w * (keep[i][j] ? 1 : 0)) / (1 - p)));

  /** Index of the largest value (the first, on a tie). */
  const argmax = (xs) => xs.reduce((best, v, j) => (v > xs[best] ? j : best), 0);

  /** One head's attention as the package computes it: scores Q Kᵀ (divided by
   * sqrt(d_k) if scale; masked if causal), guarded softmax, context with values. */
  function attention({ queries, keys, values = null, scale: scaled = false, causal = false }) {
    const dk = keys[0].length;
    let scores = queries.map((q) => keys.map((k) => dot(q, k)));
    if (scaled) scores = scale(scores, dk);
    if (causal) scores = maskScores(scores, causalMask(queries.length, keys.length));
    const weights = scores.map(softmax);
    return { scores, weights, context: values ? matmul(weights, values) : null };
  }

  // ---- Memory layout, as torch computes it ---------------------------------

  /** The strides of a fresh (contiguous) tensor of this shape. */
  function contiguousStrides(shape) {
    const out = new Array(shape.length);
    let step = 1;
    for (let i = shape.length - 1; i >= 0; i--) {
      out[i] = step;
      step *= shape[i];
    }
    return out;
  }

  /** transpose(a, b) of a { shape, stride }: both swap, memory stays. */
  function swapDims(t, a, b) {
    const shape = t.shape.slice();
    const stride = t.stride.slice();
    [shape[a], shape[b]] = [shape[b], shape[a]];
    [stride[a], stride[b]] = [stride[b], stride[a]];
    return { shape, stride };
  }

  // ---- Colour and numbers --------------------------------------------------

  // Viridis at nine evenly spaced points (matplotlib's default map, as the
  // static figures and the package's fallback tables use).
  const VIRIDIS = [
    [68, 1, 84], [71, 45, 123], [59, 82, 139], [44, 114, 142], [33, 145, 140],
    [40, 174, 128], [94, 201, 98], [173, 220, 48], [253, 231, 37],
  ];

  /** Viridis at t in [0, 1] (clamped; not a number reads as 0) as [r, g, b]. */
  function viridisRGB(t) {
    const x = Math.min(1, Math.max(0, Number.isFinite(t) ? t : 0)) * (VIRIDIS.length - 1);
    const i = Math.min(VIRIDIS.length - 2, Math.floor(x));
    const f = x - i;
    return VIRIDIS[i].map((v, k) => Math.round(v + f * (VIRIDIS[i + 1][k] - v)));
  }

  /** Viridis at t as a CSS colour. */
  const viridis = (t) => `rgb(${viridisRGB(t).join(", ")})`;

  /** Black or white, whichever contrasts more (WCAG 2 luminance; at least 4.58:1). */
  function textOn(rgb) {
    const lin = rgb.map((c) => ((c /= 255) <= 0.04045 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4));
    return 0.2126 * lin[0] + 0.7152 * lin[1] + 0.0722 * lin[2] > 0.179 ? "#000" : "#fff";
  }

  /** Inline CSS for a cell of value t in [0, 1]: viridis behind, readable text on it. */
  function paint(t) {
    const rgb = viridisRGB(t);
    return `background: rgb(${rgb.join(", ")}); color: ${textOn(rgb)}`;
  }

  /** A number as the book prints it, with a true minus sign; null or -Infinity is a masked −∞. */
  function format(value, decimals) {
    if (value === null || value === -Infinity) return "−∞";
    return value.toFixed(decimals).replace("-", "−");
  }

  // ---- DOM -------------------------------------------------------------------

  /** el("p", { class: "x", "aria-live": "polite" }, "text", child, [more]): a new element.
   * class (or className), text and style (CSS) are properties, any other an
   * attribute (true: empty; null, undefined, false: left out). Children may
   * be nested arrays; null, undefined and false are skipped. */
  function el(tag, props, ...kids) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(props || {})) {
      if (v == null || v === false) continue;
      if (k === "class" || k === "className") node.className = v;
      else if (k === "text") node.textContent = v;
      else if (k === "style") node.style.cssText = v;
      else node.setAttribute(k, v === true ? "" : String(v));
    }
    for (const kid of kids.flat(Infinity)) if (kid != null && kid !== false) node.append(kid);
    return node;
  }

  /** Add a widget's stylesheet text to the document (or shadow root `scope`) once:
   * not when text is null (the book's page links `file`) or `name` is there. */
  function addStylesheet(text, name, file, scope) {
    if (!text) return;
    const holder = (scope && (scope.head || scope)) || document.head;
    if (holder.querySelector(`style[data-attn-stylesheet='${name}'], link[href*='${file}']`)) return;
    holder.append(el("style", { "data-attn-stylesheet": name, text }));
  }

  window.AttentionEngine = Object.freeze({
    range,
    sum,
    product,
    dot,
    matmul,
    softmaxRaw,
    softmax,
    scale,
    causalMask,
    maskScores,
    dropout,
    argmax,
    attention,
    contiguousStrides,
    swapDims,
    viridisRGB,
    viridis,
    textOn,
    paint,
    format,
    el,
    addStylesheet,
  });
})();
