/* Predict, then reveal: short questions checked by an in-page computation.
 *
 * Draws every .attn-widget[data-attn-kind="quiz"] from the JSON that
 * attention.quiz embeds in it: the question's data (queries and keys, or a
 * shape and its operations). This script computes the answer from that data
 * itself, with the in-page engine every widget shares (attention-engine.js:
 * dot products, a stable softmax that gives a fully blocked row zero
 * weights, torch's rules for view and transpose), checks the reader's input
 * against it, and shows the working on Reveal. The browser tests hold its
 * answer equal to the package's, which the data also carries. Plain DOM, no
 * libraries.
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

  // The shared arithmetic and DOM helpers (attention-engine.js, loaded first).
  const E = window.AttentionEngine;
  const { el } = E;

  // ---- Arithmetic ----------------------------------------------------------

  /** One query's scores and weights over every key: the engine's attention, one row. */
  function attend(d) {
    const r = E.attention({ queries: d.queries, keys: d.keys, scale: d.scale, causal: d.causal });
    const weights = r.weights[d.query];
    return { scores: r.scores[d.query], weights, answer: E.argmax(weights) };
  }

  /** Shape and strides after each operation, from a contiguous tensor. */
  function shapes(d) {
    let t = { shape: d.shape.slice(), stride: E.contiguousStrides(d.shape) };
    const trail = [{ op: "start", ...t }];
    for (const op of d.operations) {
      if (op[0] === "view") {
        if (E.product(op[1]) !== E.product(t.shape)) throw new Error(`view(${op[1]}) changes the size`);
        t = { shape: op[1].slice(), stride: E.contiguousStrides(op[1]) };
        trail.push({ op: `.view(${op[1].join(", ")})`, ...t });
      } else {
        const [, a, b] = op;
        t = E.swapDims(t, a, b);
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

  function start() {
    document.querySelectorAll('.attn-widget[data-attn-kind="quiz"]').forEach((root) => {
      if (root.dataset.quizStarted) return;
      root.dataset.quizStarted = "1";
      E.addStylesheet(STYLESHEET, "quiz", "attention-quiz.css");
      root.querySelectorAll(":scope > .attn-fallback").forEach((fallback) => fallback.remove());
      setup(root);
    });
  }

  window.AttentionQuiz = { start, solve, judge };
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
