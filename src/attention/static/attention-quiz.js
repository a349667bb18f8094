/* Predict, then reveal: short questions checked by an in-page computation.
 *
 * Draws every .attn-widget[data-attn-kind="quiz"] from the JSON that
 * attention.quiz embeds in it: the question's data (queries and keys, or a
 * shape and its operations). This script computes the answer from that data
 * itself, with the playground's arithmetic (dot products, a stable softmax
 * that gives a fully blocked row zero weights) and torch's rules for view and
 * transpose, checks the reader's input against it, and shows the working on
 * Reveal. The browser tests hold its answer equal to the package's, which
 * the data also carries. Plain DOM, no libraries.
 */
(() => {
  "use strict";

  if (window.AttentionQuiz) {
    window.AttentionQuiz.start();
    return;
  }

  // The stylesheet's text when the widget carries this script itself
  // (attention.widgets fills it in); null in the book, whose page links the file.
  const STYLESHEET = null;

  // ---- Arithmetic ----------------------------------------------------------

  const dot = (a, b) => a.reduce((sum, v, i) => sum + v * b[i], 0);

  /** Stable softmax; a row masked everywhere gets all-zero weights. */
  function softmax(row) {
    const max = Math.max(...row);
    if (max === -Infinity) return row.map(() => 0);
    const e = row.map((s) => Math.exp(s - max));
    const sum = e.reduce((a, b) => a + b, 0);
    return e.map((v) => v / sum);
  }

  /** One query's scores and weights over every key. */
  function attend(d) {
    const q = d.queries[d.query];
    const dk = q.length;
    const scores = d.keys.map((k, j) => {
      if (d.causal && j > d.query) return -Infinity;
      const s = dot(q, k);
      return d.scale ? s / Math.sqrt(dk) : s;
    });
    const weights = softmax(scores);
    let best = 0;
    weights.forEach((w, j) => {
      if (w > weights[best]) best = j;
    });
    return { scores, weights, answer: best };
  }

  const product = (xs) => xs.reduce((a, b) => a * b, 1);
  function contiguousStrides(shape) {
    const out = new Array(shape.length);
    let step = 1;
    for (let i = shape.length - 1; i >= 0; i--) {
      out[i] = step;
      step *= shape[i];
    }
    return out;
  }

  /** Shape and strides after each operation, from a contiguous tensor. */
  function shapes(d) {
    let t = { shape: d.shape.slice(), stride: contiguousStrides(d.shape) };
    const trail = [{ op: "start", ...t }];
    for (const op of d.operations) {
      if (op[0] === "view") {
        if (product(op[1]) !== product(t.shape)) throw new Error(`view(${op[1]}) changes the size`);
        t = { shape: op[1].slice(), stride: contiguousStrides(op[1]) };
        trail.push({ op: `.view(${op[1].join(", ")})`, ...t });
      } else {
        const [, a, b] = op;
        const shape = t.shape.slice();
        const stride = t.stride.slice();
        [shape[a], shape[b]] = [shape[b], shape[a]];
        [stride[a], stride[b]] = [stride[b], stride[a]];
        t = { shape, stride };
        trail.push({ op: `.transpose(${a}, ${b})`, ...t });
      }
    }
    return trail;
  }

  /** The answer the page computes, and the lines that show how. */
  function solve(d) {
    if (d.type === "attend") {
      const r = attend(d);
      const lines = d.tokens.map(
        (tok, j) =>
          `${tok}: score ${r.scores[j] === -Infinity ? "−∞ (masked)" : r.scores[j].toFixed(4)}, weight ${r.weights[j].toFixed(4)}`,
      );
      return { answer: r.answer, text: d.tokens[r.answer], weights: r.weights, lines };
    }
    const trail = shapes(d);
    const last = trail[trail.length - 1];
    const lines = trail.map(
      (s) => `${s.op === "start" ? "x" : s.op}: shape (${s.shape.join(", ")}), stride (${s.stride.join(", ")})`,
    );
    if (d.type === "shape") return { answer: last.shape, text: last.shape.join(", "), lines };
    return { answer: last.stride[d.dim], text: String(last.stride[d.dim]), lines };
  }

  /** Feedback on the reader's input: [right?, sentence]. */
  function judge(d, solved, input) {
    if (d.type === "attend") {
      if (input === null) return [false, "Pick a token first."];
      const j = +input;
      if (j === solved.answer) {
        return [true, `Right: “${d.tokens[j]}” gets the largest weight, ${solved.weights[j].toFixed(4)}.`];
      }
      const w = solved.weights[j];
      const why = w === 0 && d.causal && j > d.query ? " (it comes after the query, so the mask blocks it)" : "";
      return [false, `Not quite: “${d.tokens[j]}” gets weight ${w.toFixed(4)}${why}; another key gets more.`];
    }
    const text = (input || "").trim();
    if (d.type === "shape") {
      if (!/^\(?\s*\d+(\s*,\s*\d+)*\s*,?\s*\)?$/.test(text)) {
        return [false, "Type the sizes separated by commas, for example 2, 6, 4."];
      }
      const sizes = text.match(/\d+/g).map(Number);
      const want = solved.answer;
      if (sizes.length === want.length && sizes.every((s, i) => s === want[i])) {
        return [true, `Right: (${want.join(", ")}).`];
      }
      if (sizes.length !== want.length) {
        return [false, `Not quite: the result has ${want.length} dimensions, you typed ${sizes.length}.`];
      }
      const sorted = (xs) => xs.slice().sort((a, b) => a - b).join(",");
      const order = sorted(sizes) === sorted(want) ? " The sizes are right; their order is not." : "";
      return [false, `Not quite: (${sizes.join(", ")}) is not the shape that comes out.${order}`];
    }
    if (!/^\d+$/.test(text)) return [false, "Type a whole number."];
    if (+text === solved.answer) return [true, `Right: ${solved.answer}.`];
    return [
      false,
      `Not quite: ${text} places is not one step along dimension ${d.dim}. A stride counts places in memory, and transpose swaps strides without moving memory.`,
    ];
  }

  // ---- Drawing ----------------------------------------------------------------

  function el(tag, props, ...kids) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(props || {})) {
      if (v == null || v === false) continue;
      if (k === "class") e.className = v;
      else e.setAttribute(k, v === true ? "" : v);
    }
    for (const kid of kids.flat()) if (kid != null) e.append(kid);
    return e;
  }

  let counter = 0;

  function setup(root) {
    const d = JSON.parse(root.querySelector("script.attn-data").textContent);
    const solved = solve(d);
    const id = `attn-quiz-${++counter}`;
    let field;
    let read;
    if (d.type === "attend") {
      field = el(
        "fieldset",
        { class: "attn-quiz-choices" },
        el("legend", {}, "Your answer"),
        d.tokens.map((tok, j) =>
          el("label", {}, el("input", { type: "radio", name: `${id}-choice`, value: String(j) }), ` ${tok}`),
        ),
      );
      read = () => {
        const c = field.querySelector("input:checked");
        return c ? c.value : null;
      };
    } else {
      const input = el("input", {
        id: `${id}-input`,
        type: "text",
        inputmode: d.type === "shape" ? "text" : "numeric",
        autocomplete: "off",
        spellcheck: "false",
        placeholder: d.type === "shape" ? "2, 6, 4" : "a number",
        "data-quiz": "input",
      });
      field = el(
        "span",
        { class: "attn-quiz-field" },
        el("label", { for: input.id }, d.type === "shape" ? "Shape: " : "Stride: "),
        input,
      );
      read = () => input.value;
    }
    const feedback = el("p", { class: "attn-quiz-feedback", "aria-live": "polite", "data-quiz": "feedback" });
    const reveal = el("div", { class: "attn-quiz-reveal", "data-quiz": "reveal", "data-answer": JSON.stringify(solved.answer), hidden: true },
      el("p", {}, "Answer: ", el("strong", {}, solved.text)),
      el("ul", {}, solved.lines.map((line) => el("li", {}, line))),
    );
    const check = el("button", { type: "submit", "data-quiz": "check" }, "Check");
    const show = el("button", { type: "button", "data-quiz": "reveal-button", "aria-expanded": "false" }, "Reveal");
    const form = el(
      "form",
      { class: "attn-quiz", "aria-labelledby": `${id}-q` },
      el("p", { id: `${id}-q`, class: "attn-quiz-question" }, el("span", { class: "attn-quiz-tag" }, "Predict: "), d.prompt),
      field,
      el("span", { class: "attn-quiz-buttons" }, check, show),
      feedback,
      reveal,
    );
    form.addEventListener("submit", (ev) => {
      ev.preventDefault();
      const [right, text] = judge(d, solved, read());
      feedback.textContent = text;
      root.dataset.quizState = right ? "right" : "wrong";
    });
    show.addEventListener("click", () => {
      const open = reveal.hidden;
      reveal.hidden = !open;
      show.setAttribute("aria-expanded", String(open));
      show.textContent = open ? "Hide" : "Reveal";
    });
    root.append(form);
    root.dataset.quizReady = "1";
  }

  function addStylesheet() {
    if (!STYLESHEET) return;
    const present = "style[data-attn-stylesheet='quiz'], link[href*='attention-quiz.css']";
    if (document.querySelector(present)) return;
    document.head.append(el("style", { "data-attn-stylesheet": "quiz" }, STYLESHEET));
  }

  function start() {
    document.querySelectorAll('.attn-widget[data-attn-kind="quiz"]').forEach((root) => {
      if (root.dataset.quizStarted) return;
      root.dataset.quizStarted = "1";
      addStylesheet();
      root.querySelectorAll(":scope > .attn-fallback").forEach((fallback) => fallback.remove());
      setup(root);
    });
  }

  window.AttentionQuiz = { start, solve, judge };
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
