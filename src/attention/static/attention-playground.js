/* The attention playground: chapter 3's attention, recomputed in the browser.
 *
 * Draws every .attn-widget[data-attn-kind="playground"] from the JSON that
 * attention.playground.playground() embeds in it. The arithmetic is that of
 * attention.playground.playground_attention; the browser tests hold it to the
 * package's reference cases. Plain DOM, no libraries.
 *
 * As with attention-widgets.js, the book's page loads this file once, and a
 * playground shown anywhere else carries a copy with its stylesheet in
 * STYLESHEET: the first copy to run defines window.AttentionPlayground, and
 * every later one only starts the playgrounds not started yet.
 */
(() => {
  "use strict";

  if (window.AttentionPlayground) {
    window.AttentionPlayground.start();
    return;
  }

  // The stylesheet's text when the widget carries this script itself
  // (attention.widgets fills it in); null in the book, whose page links the file.
  const STYLESHEET = null;

  const MATS = ["W_query", "W_key", "W_value"];
  const MAX_WORDS = 10;

  // ---- Arithmetic ----------------------------------------------------------

  // The shared arithmetic and DOM helpers (attention-engine.js, loaded first):
  // matmul, the stable softmax (softmaxRaw as torch computes it, softmax with
  // the package's guard for a row masked everywhere), el.
  const E = window.AttentionEngine;
  const { range, matmul, softmaxRaw, softmax, el } = E;
  const copy = (m) => m.map((row) => row.slice());
  const eye = (n) => range(n).map((i) => range(n).map((k) => (i === k ? 1 : 0)));

  /** A small seeded PRNG (mulberry32): numbers in [0, 1). */
  function mulberry32(seed) {
    let a = seed >>> 0;
    return () => {
      a = (a + 0x6d2b79f5) >>> 0;
      let t = Math.imul(a ^ (a >>> 15), a | 1);
      t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
      return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
    };
  }

  /** FNV-1a, 32 bits. */
  function hash(text) {
    let h = 0x811c9dc5;
    for (const ch of text) h = Math.imul(h ^ ch.codePointAt(0), 0x01000193);
    return h >>> 0;
  }

  /** Scores and weights (H, T, T) and context (T, d_out) for the state s. */
  function attend(s) {
    const X = s.X;
    const T = X.length;
    const dIn = X[0].length;
    const free = s.mode === "weight-free";
    const I = eye(dIn);
    const [Q, K, V] = MATS.map((m) => matmul(X, free ? I : s.W[m]));
    const dOut = free ? dIn : s.d_out;
    const H = free ? 1 : s.heads;
    const D = dOut / H;
    const rand = mulberry32(s.draw);
    const scores = [];
    const weights = [];
    const context = X.map(() => new Array(dOut).fill(0));
    for (let h = 0; h < H; h++) {
      const cols = range(D).map((k) => h * D + k);
      const S = Q.map((q, i) =>
        K.map((k, j) => {
          if (s.causal && j > i) return -Infinity;
          const dot = cols.reduce((sum, c) => sum + q[c] * k[c], 0);
          return s.scale ? dot / Math.sqrt(D) : dot;
        }),
      );
      let A = S.map(softmax);
      if (s.dropout) A = A.map((row) => row.map((w) => (rand() < s.p ? 0 : w / (1 - s.p))));
      A.forEach((row, i) =>
        row.forEach((w, j) => cols.forEach((c) => (context[i][c] += w * V[j][c]))),
      );
      scores.push(S);
      weights.push(A);
    }
    return { T, dIn, dOut, H, D, scores, weights, context };
  }

  // ---- DOM -----------------------------------------------------------------

  const fmt = (v) => (v === -Infinity ? "−∞" : v.toFixed(4).replace(/^-(0\.0+)$/, "$1"));
  const num = (v, attrs) => el("td", { ...attrs, "data-value": String(v) }, fmt(v));
  const shape = (...dims) => `(${dims.join(", ")})`;
  const option = (value, text, selected) => el("option", { value, selected }, text);
  const labelled = (text, control, cls) =>
    el("label", { class: cls || "attn-pg-field" }, el("span", {}, text), control);

  function table(caption, head, rows, attrs) {
    return el(
      "table",
      attrs,
      el("caption", {}, caption),
      head && el("thead", {}, el("tr", {}, head.map((t) => el("th", { scope: "col" }, t)))),
      el("tbody", {}, rows),
    );
  }

  /** A table inside its own horizontal scroller, reachable by keyboard. */
  const scroller = (label) =>
    el("div", { class: "attn-pg-scroll", tabindex: "0", role: "region", "aria-label": label });

  function numberInput(pg, value, row, col, label) {
    return el("input", {
      type: "number",
      step: "0.01",
      value: String(value),
      "data-pg": pg,
      "data-row": row,
      "data-col": col,
      "aria-label": label,
    });
  }

  // ---- One playground --------------------------------------------------------

  function setup(root) {
    const data = JSON.parse(root.querySelector("script.attn-data").textContent);
    const init = data.initial;
    const seeded = data.seeded;
    const widths = Object.keys(seeded)
      .map(Number)
      .sort((a, b) => a - b);
    const s = {
      tokens: data.tokens.slice(),
      X: copy(data.inputs),
      mode: init.mode,
      query: init.query,
      scale: init.scale,
      causal: init.causal,
      dropout: init.dropout,
      p: init.p,
      d_out: init.d_out,
      heads: init.heads,
      W: {},
      draw: data.seed,
      head: 0,
    };
    const reseed = () => MATS.forEach((m) => (s.W[m] = copy(seeded[s.d_out][m])));
    reseed();

    // Controls.
    const select = (pg, label) => el("select", { "data-pg": pg, "aria-label": label });
    const check = (pg) => el("input", { type: "checkbox", "data-pg": pg, checked: s[pg] });
    const mode = select("mode", "Mode");
    mode.append(
      option("weight-free", "weight-free", s.mode === "weight-free"),
      option("trainable", "trainable", s.mode === "trainable"),
    );
    const query = select("query", "Query token");
    const dOut = select("d_out", "Output width d_out");
    widths.forEach((d) => dOut.append(option(d, String(d), d === s.d_out)));
    const heads = select("heads", "Number of heads");
    const heatHead = select("heat-head", "Head shown in the heatmap");
    const pIn = el("input", {
      type: "number",
      min: "0",
      max: "0.95",
      step: "0.05",
      value: String(s.p),
      "data-pg": "p",
      "aria-label": "Dropout probability p",
    });
    const redraw = el("button", { type: "button", "data-pg": "redraw" }, "New draw");
    const sentence = el("input", {
      type: "text",
      "data-pg": "sentence",
      value: s.tokens.join(" "),
      "aria-label": `A short sentence, up to ${MAX_WORDS} words`,
      autocomplete: "off",
      spellcheck: "false",
    });
    const useSentence = el("button", { type: "button", "data-pg": "use-sentence" }, "Use sentence");
    const status = el("p", { class: "attn-pg-status", role: "status" });
    const reset = el(
      "button",
      { type: "button", "data-pg": "reset-weights" },
      `Reset to seed ${data.seed}`,
    );

    const trainable = [labelled("d_out", dOut), labelled("heads", heads)];
    const settings = el(
      "fieldset",
      { class: "attn-pg-controls" },
      el("legend", {}, "Settings"),
      labelled("Mode", mode),
      labelled("Query", query),
      trainable,
      labelled("Scale scores by √d_k", check("scale"), "attn-pg-check"),
      labelled("Causal mask", check("causal"), "attn-pg-check"),
      labelled("Training mode (dropout)", check("dropout"), "attn-pg-check"),
      labelled("p", pIn),
      redraw,
    );
    const words = el(
      "fieldset",
      { class: "attn-pg-controls" },
      el("legend", {}, "Tokens"),
      labelled("Sentence", sentence, "attn-pg-field attn-pg-wide"),
      useSentence,
      status,
    );

    const xWrap = scroller("Embeddings");
    const wWrap = el("div", { class: "attn-pg-mats" });
    const matrices = el(
      "div",
      { class: "attn-pg-group" },
      wWrap,
      el("p", {}, reset, ` The matrices of SelfAttentionV1 after torch.manual_seed(${data.seed}).`),
    );
    trainable.push(matrices);

    const recipe = el("p", { class: "attn-pg-recipe" });
    const outs = {};
    const out = (name, label) => (outs[name] = scroller(label));
    const heatLabel = labelled("Head", heatHead);

    root.append(
      el(
        "div",
        { class: "attn-pg" },
        settings,
        words,
        el("div", { class: "attn-pg-group" }, xWrap),
        matrices,
        recipe,
        out("shapes", "Shapes"),
        el(
          "div",
          { class: "attn-pg-row" },
          out("scores", "Scores of the query"),
          out("weights", "Weights of the query"),
        ),
        el(
          "div",
          { class: "attn-pg-row" },
          out("context", "Context vector of the query"),
          out("all_context", "Context vectors of all tokens"),
        ),
        el(
          "div",
          { class: "attn-pg-group" },
          el("p", {}, "Rows are queries, columns are keys; the brighter a cell, the larger its weight."),
          heatLabel,
          out("heatmap", "Heatmap of all weights"),
        ),
      ),
    );

    // Parts rebuilt only when their structure changes.
    function drawQueries() {
      s.query = Math.min(s.query, s.tokens.length - 1);
      query.replaceChildren(...s.tokens.map((t, i) => option(i, `${t} (${i})`, i === s.query)));
    }
    function drawHeads() {
      const divisors = range(s.d_out)
        .map((i) => i + 1)
        .filter((d) => s.d_out % d === 0);
      heads.replaceChildren(...divisors.map((d) => option(d, String(d), d === s.heads)));
    }
    function drawHeatHeads(H) {
      if (heatHead.options.length === H) return;
      s.head = Math.min(s.head, H - 1);
      heatHead.replaceChildren(...range(H).map((h) => option(h, `head ${h + 1}`, h === s.head)));
    }
    function drawEmbeddings() {
      const d = s.X[0].length;
      xWrap.replaceChildren(
        table(
          "Embeddings X (editable)",
          ["token", ...range(d).map((k) => `x[${k}]`)],
          s.X.map((row, i) =>
            el(
              "tr",
              {},
              el("th", { scope: "row" }, s.tokens[i]),
              row.map((v, k) =>
                el("td", {}, numberInput("x", v, i, k, `Embedding of “${s.tokens[i]}”, x[${k}]`)),
              ),
            ),
          ),
        ),
      );
    }
    function drawMatrices() {
      wWrap.replaceChildren(
        ...MATS.map((m) => {
          const W = s.W[m];
          const wrap = scroller(m);
          wrap.append(
            table(
              `${m} (d_in × d_out)`,
              ["in \\ out", ...range(W[0].length).map(String)],
              W.map((row, i) =>
                el(
                  "tr",
                  {},
                  el("th", { scope: "row" }, String(i)),
                  row.map((v, k) => el("td", {}, numberInput(m, v, i, k, `${m} row ${i} column ${k}`))),
                ),
              ),
            ),
          );
          return wrap;
        }),
      );
    }

    function fill(name, node) {
      const wrap = outs[name];
      const x = wrap.scrollLeft;
      wrap.replaceChildren(node);
      wrap.scrollLeft = x;
    }

    // Everything computed, redrawn on every change.
    function update() {
      const isTrainable = s.mode === "trainable";
      trainable.forEach((e) => (e.hidden = !isTrainable));
      pIn.disabled = redraw.disabled = !s.dropout;
      const r = attend(s);
      drawHeatHeads(r.H);
      heatLabel.hidden = r.H === 1;
      const q = s.query;
      const tok = s.tokens;
      const name = `“${tok[q]}”`;
      const headNames = range(r.H).map((h) => (r.H === 1 ? "" : `head ${h + 1} `));

      recipe.textContent =
        (isTrainable
          ? "Q = X W_query, K = X W_key, V = X W_value; "
          : "Weight-free: Q = K = V = X; ") +
        `per head: weights = softmax(${s.causal ? "mask(" : ""}Q_h K_hᵀ${
          s.scale ? ` / √${r.D}` : ""
        }${s.causal ? ")" : ""})${
          s.dropout ? `, then dropout (p = ${s.p}) with draw ${s.draw}` : ""
        }; context = weights V_h${r.H > 1 ? ", heads concatenated" : ""}.`;

      const shapes = [
        ["X", shape(r.T, r.dIn), "(T, d_in)"],
        isTrainable && ["W_query, W_key, W_value", shape(r.dIn, r.dOut), "(d_in, d_out)"],
        [isTrainable ? "Q, K, V" : "Q = K = V = X", shape(r.T, r.dOut), "(T, d_out)"],
        ["Q_h, K_h, V_h (per head)", shape(r.H, r.T, r.D), "(H, T, D)"],
        ["scores, weights", shape(r.H, r.T, r.T), "(H, T, T)"],
        ["context", shape(r.T, r.dOut), "(T, d_out)"],
      ].filter(Boolean);
      fill(
        "shapes",
        table(
          "Shapes",
          ["tensor", "shape", "in letters"],
          shapes.map(([t, sh, letters]) =>
            el("tr", {}, el("th", { scope: "row" }, t), el("td", {}, sh), el("td", {}, letters)),
          ),
          { "data-pg-out": "shapes" },
        ),
      );

      const perKey = (caption, cell) =>
        table(
          caption,
          ["key", ...headNames.map((n) => n || (caption.startsWith("Scores") ? "score" : "weight"))],
          tok.map((t, j) =>
            el("tr", {}, el("th", { scope: "row" }, t), range(r.H).map((h) => cell(h, j))),
          ),
          { "data-pg-out": caption.startsWith("Scores") ? "scores" : "weights" },
        );
      fill(
        "scores",
        perKey(`Scores of ${name}`, (h, j) => {
          const v = r.scores[h][q][j];
          return num(v, { "data-head": h, "data-key": j, class: v === -Infinity && "attn-pg-masked" });
        }),
      );
      fill(
        "weights",
        perKey(`Weights of ${name}`, (h, j) => {
          const w = r.weights[h][q][j];
          const td = num(w, { "data-head": h, "data-key": j });
          const width = Math.min(100, Math.max(0, w * 100));
          td.append(
            el(
              "span",
              { class: "attn-pg-bar", "aria-hidden": "true" },
              el("span", { style: `width: ${width}%` }),
            ),
          );
          return td;
        }),
      );

      const dims = range(r.dOut).map((k) => `z[${k}]`);
      fill(
        "context",
        table(
          `Context vector of ${name}`,
          ["query", ...dims],
          el(
            "tr",
            {},
            el("th", { scope: "row" }, tok[q]),
            r.context[q].map((v, k) => num(v, { "data-index": k })),
          ),
          { "data-pg-out": "context" },
        ),
      );
      const rowsOf = (M, cls) =>
        M.map((row, i) =>
          el(
            "tr",
            { class: i === q && "attn-pg-current" },
            el("th", { scope: "row" }, tok[i]),
            row.map((v, k) => cls(v, i, k)),
          ),
        );
      fill(
        "all_context",
        table(
          "Context vectors of all tokens",
          ["token", ...dims],
          rowsOf(r.context, (v, i, k) => num(v, { "data-row": i, "data-col": k })),
          { "data-pg-out": "all_context" },
        ),
      );

      const A = r.weights[s.head];
      const top = Math.max(...A.flat()) || 1;
      fill(
        "heatmap",
        table(
          `Weights of every query${r.H > 1 ? `, head ${s.head + 1}` : ""}`,
          ["query \\ key", ...tok],
          rowsOf(A, (v, i, k) =>
            num(v, {
              "data-row": i,
              "data-col": k,
              style: E.paint(v / top),
              class: s.causal && k > i && "attn-pg-masked",
            }),
          ),
          { "data-pg-out": "heatmap", class: "attn-pg-heat" },
        ),
      );
    }

    function useWords() {
      const words = sentence.value
        .split(/\s+/)
        .map((w) => w.replace(/^[^\p{L}\p{N}]+|[^\p{L}\p{N}]+$/gu, ""))
        .filter(Boolean);
      if (!words.length) {
        status.textContent = "Type at least one word.";
        return;
      }
      const known = new Map();
      data.tokens.forEach((t, i) => known.set(t.toLowerCase(), data.inputs[i]));
      s.tokens.forEach((t, i) => known.set(t.toLowerCase(), s.X[i]));
      const d = s.X[0].length;
      const kept = words.slice(0, MAX_WORDS);
      s.X = kept.map((w) => {
        const row = known.get(w.toLowerCase());
        if (row) return row.slice();
        const rand = mulberry32(hash(`${data.seed} ${w.toLowerCase()}`));
        return range(d).map(() => Math.floor(rand() * 100) / 100);
      });
      s.tokens = kept;
      sentence.value = kept.join(" ");
      status.textContent =
        `${kept.length} token${kept.length > 1 ? "s" : ""}` +
        (words.length > MAX_WORDS ? ` (only the first ${MAX_WORDS} words are used)` : "") +
        "; new words get embeddings from a hash of the word.";
      drawQueries();
      drawEmbeddings();
      update();
    }

    function onChange(ev) {
      const t = ev.target;
      const pg = t.dataset && t.dataset.pg;
      if (pg === "x" || MATS.includes(pg) || pg === "p") {
        const v = t.valueAsNumber;
        const bad = !Number.isFinite(v) || (pg === "p" && (v < 0 || v > 0.95));
        if (bad) t.setAttribute("aria-invalid", "true");
        else t.removeAttribute("aria-invalid");
        if (bad) return;
        if (pg === "p") s.p = v;
        else (pg === "x" ? s.X : s.W[pg])[+t.dataset.row][+t.dataset.col] = v;
      } else if (pg === "mode" || pg === "query" || pg === "heads" || pg === "heat-head") {
        const v = pg === "mode" ? t.value : +t.value;
        if (pg === "heat-head") s.head = v;
        else s[pg] = v;
      } else if (pg === "scale" || pg === "causal" || pg === "dropout") {
        s[pg] = t.checked;
      } else if (pg === "d_out") {
        const d = +t.value;
        if (d === s.d_out) return;
        s.d_out = d;
        if (d % s.heads) s.heads = 1;
        reseed();
        drawHeads();
        drawMatrices();
      } else {
        return;
      }
      update();
    }

    root.addEventListener("input", onChange);
    root.addEventListener("change", onChange);
    redraw.addEventListener("click", () => {
      s.draw = (s.draw + 1) >>> 0;
      update();
    });
    useSentence.addEventListener("click", useWords);
    sentence.addEventListener("keydown", (ev) => {
      if (ev.key === "Enter") {
        ev.preventDefault();
        useWords();
      }
    });
    reset.addEventListener("click", () => {
      reseed();
      drawMatrices();
      update();
    });

    drawQueries();
    drawHeads();
    drawEmbeddings();
    drawMatrices();
    update();
  }

  // ---- The lab: one causal head, line by line ----------------------------------

  const LAB_STEP_IDS = ["scores", "scaled", "masked", "weights", "zeroed", "dropped", "context"];
  const WEIGHT_STEPS = ["weights", "zeroed", "dropped"];
  const D_K_INDEX = (list, d) => Math.max(0, list.indexOf(d));
  const sumOf = E.sum;
  // Numbers inside explanations: four decimals, or a mantissa and exponent when huge.
  const term = (v) => (Number.isFinite(v) && Math.abs(v) >= 1e5 ? v.toExponential(4) : fmt(v));
  const asNumbers = (m) => m.map((row) => row.map(Number));

  /** Every tensor of the lab's forward pass: attention.lab.lab_forward, in the browser. */
  function labForward(data, s) {
    const head = data.inputs[s.source];
    const dk = s.source === "random" ? s.d_k : head.queries[0].length;
    const Q = asNumbers(head.queries).map((r) => r.slice(0, dk));
    const K = asNumbers(head.keys).map((r) => r.slice(0, dk));
    const V = asNumbers(head.values);
    const T = Q.length;
    const mask = range(T).map((i) => range(T).map((j) => j > i || i === s.blocked_row));
    const each = (M, f) => M.map((row, i) => row.map((v, j) => f(v, i, j)));
    const scores = Q.map((q) => K.map((k) => E.dot(q, k)));
    const scaled = s.scale ? each(scores, (v) => v / dk ** 0.5) : scores;
    const masked = s.mask_after ? scaled : each(scaled, (v, i, j) => (mask[i][j] ? -Infinity : v));
    const weights = masked.map(softmaxRaw);
    const zeroed = s.mask_after ? each(weights, (w, i, j) => (mask[i][j] ? 0 : w)) : weights;
    const drop = (W) => (s.training ? E.dropout(W, data.keep, data.p) : W);
    const dropped = drop(zeroed);
    const guarded = scaled.map((row, i) =>
      softmax(row.map((v, j) => (mask[i][j] ? -Infinity : v))),
    );
    const entr = (w) => (w === 0 ? 0 : -w * Math.log(w));
    return {
      T,
      dk,
      dv: V[0].length,
      Q,
      K,
      V,
      mask,
      scores,
      scaled,
      masked,
      weights,
      zeroed,
      dropped,
      context: matmul(dropped, V),
      guarded,
      guarded_context: matmul(drop(guarded), V),
      max_weight: weights.map((row) => Math.max(...row)),
      entropy: weights.map((row) => sumOf(row.map(entr))),
    };
  }

  /** The six lines the lab steps through, for the state s. */
  const labSteps = (s) =>
    LAB_STEP_IDS.filter((id) => (s.mask_after ? id !== "masked" : id !== "zeroed"));

  function setupLab(root) {
    const data = JSON.parse(root.querySelector("script.attn-data").textContent);
    const tok = data.tokens;
    const s = { ...data.initial, step: 0, cell: null };
    let r = null;

    const live = el("p", { class: "attn-lab-live", role: "status", "aria-live": "polite" });
    const prev = el("button", { type: "button", "data-lab": "prev" }, "← Previous");
    const next = el("button", { type: "button", "data-lab": "next" }, "Next →");
    const counter = el("span", { class: "attn-lab-counter", "aria-hidden": "true" });
    const code = el("ol", { class: "attn-lab-code", "aria-label": "The forward pass, one line a step" });
    const panels = el("div", { class: "attn-lab-panels" });
    const explain = el("div", {
      class: "attn-lab-explain",
      role: "status",
      "aria-live": "polite",
      "data-lab-out": "explain",
    });

    const check = (name, text) =>
      labelled(
        text,
        el("input", { type: "checkbox", "data-lab": name, checked: s[name] }),
        "attn-pg-check",
      );
    const source = el(
      "select",
      { "data-lab": "source", "aria-label": "Queries and keys" },
      option("book", "the book's head (d_k = 2)", s.source === "book"),
      option("random", "random, unit variance (d_k slider)", s.source === "random"),
    );
    const dkInput = el("input", {
      type: "range",
      min: "0",
      max: String(data.d_k.length - 1),
      step: "1",
      value: String(D_K_INDEX(data.d_k, s.d_k)),
      "data-lab": "d_k",
      "aria-label": "d_k, the width of the queries and keys",
    });
    const dkShown = el("output", { "data-lab-out": "d_k" });
    const dkField = el("label", { class: "attn-pg-field" }, el("span", {}, "d_k"), dkInput, dkShown);
    const blocked = el(
      "select",
      { "data-lab": "blocked_row", "aria-label": "Mask every key of this row" },
      option("", "none", true),
      tok.map((t, i) => option(String(i), `${t} (${i})`, false)),
    );
    const saturation = el("p", { class: "attn-lab-note", "data-lab-out": "saturation" });
    const controls = el(
      "fieldset",
      { class: "attn-pg-controls" },
      el("legend", {}, "Break it on purpose"),
      check("scale", "Scale by √d_k"),
      labelled("Queries and keys", source),
      dkField,
      check("mask_after", "Zero the future after the softmax (instead of −∞ before)"),
      check("training", `Dropout in training (p = ${data.p}, fixed mask)`),
      labelled("Mask every key of row", blocked),
      saturation,
    );

    root.append(
      el(
        "div",
        { class: "attn-pg attn-lab" },
        el("div", { class: "attn-lab-bar" }, prev, counter, next),
        el("div", { class: "attn-lab-main" }, code, panels),
        explain,
        live,
        controls,
      ),
    );

    // One table for one step's tensor: queries are rows, keys (or value columns) columns.
    function grid(id, M) {
      const isContext = id === "context";
      const cols = isContext ? range(r.dv).map((c) => `v[${c}]`) : tok;
      const extra = WEIGHT_STEPS.includes(id) ? ["row sum"] : [];
      if (id === "weights") extra.unshift("max", "entropy");
      const stats = (i) => {
        const values = [];
        if (id === "weights") values.push(["max_weight", r.max_weight[i]], ["entropy", r.entropy[i]]);
        if (extra.length) values.push(["sum", sumOf(M[i])]);
        return values.map(([stat, v]) =>
          num(v, { class: "attn-lab-stat", "data-stat": stat, "data-row": i, tabindex: "-1" }),
        );
      };
      const top = Math.max(...M.flat().filter(Number.isFinite).map(Math.abs)) || 1;
      return table(
        `${data.lines[id].split(" = ")[0]} after this line, shape ${shape(M.length, M[0].length)}`,
        [isContext ? "query \\ column" : "query \\ key", ...cols, ...extra],
        M.map((row, i) =>
          el(
            "tr",
            {},
            el("th", { scope: "row" }, tok[i]),
            row.map((v, j) => {
              const blockedCell = !isContext && r.mask[i][j];
              const style =
                WEIGHT_STEPS.includes(id) && Number.isFinite(v)
                  ? `--lab-w: ${Math.round((Math.abs(v) / top) * 60)}%`
                  : null;
              return num(v, {
                "data-row": i,
                "data-col": j,
                tabindex: "-1",
                class: blockedCell ? "attn-pg-masked" : null,
                style,
              });
            }),
            stats(i),
          ),
        ),
        { role: "grid", "data-lab-step": id, "aria-readonly": "true" },
      );
    }

    function guardTable(kind) {
      const i = s.blocked_row;
      const M = kind === "weights" ? r.guarded : r.guarded_context;
      const cols = kind === "weights" ? tok : range(r.dv).map((c) => `v[${c}]`);
      return table(
        `Row “${tok[i]}” as the package's masked_softmax gives it (${kind})`,
        ["query", ...cols],
        el(
          "tr",
          {},
          el("th", { scope: "row" }, tok[i]),
          M[i].map((v, j) => num(v, { "data-guard": kind, "data-col": j })),
        ),
        { class: "attn-lab-guard" },
      );
    }

    function lineText(id) {
      if (id === "scaled" && !s.scale) return "scores = scores  # scaling removed";
      if (id === "dropped" && !s.training) return `${data.lines[id]}  # evaluation: does nothing`;
      return data.lines[id];
    }

    function drawCode(ids) {
      code.replaceChildren(
        ...ids.map((id, k) =>
          el(
            "li",
            {},
            el(
              "button",
              {
                type: "button",
                class: "attn-lab-line",
                "data-lab-line": id,
                "aria-current": k === s.step ? "step" : null,
                tabindex: k === s.step ? "0" : "-1",
              },
              el("code", {}, lineText(id)),
              el(
                "span",
                { class: "attn-lab-shape" },
                `  # ${shape(r[id].length, r[id][0].length)}`,
              ),
            ),
          ),
        ),
      );
    }

    function drawPanels(ids) {
      panels.replaceChildren(
        ...ids.map((id, k) => {
          const panel = el("section", {
            class: "attn-lab-panel",
            "data-lab-panel": id,
            "aria-label": `Step ${k + 1}: ${lineText(id)}`,
            hidden: k !== s.step,
          });
          const wrap = scroller(`Tensor after step ${k + 1}`);
          wrap.append(grid(id, r[id]));
          panel.append(wrap);
          const guard = s.blocked_row != null && !s.mask_after;
          if (guard && id === "weights") panel.append(guardTable("weights"));
          if (guard && id === "context") panel.append(guardTable("context"));
          return panel;
        }),
      );
    }

    function announce(ids) {
      const id = ids[s.step];
      counter.textContent = `Step ${s.step + 1} of ${ids.length}`;
      live.textContent = `Step ${s.step + 1} of ${ids.length}: ${lineText(id)}, gives a tensor of shape ${shape(
        r[id].length,
        r[id][0].length,
      )}.`;
      prev.disabled = s.step === 0;
      next.disabled = s.step === ids.length - 1;
    }

    function update() {
      r = labForward(data, s);
      const ids = labSteps(s);
      s.step = Math.min(s.step, ids.length - 1);
      dkField.hidden = s.source !== "random";
      dkShown.textContent = String(s.d_k);
      dkInput.setAttribute("aria-valuetext", `d_k = ${s.d_k}`);
      const maxes = r.max_weight.filter(Number.isFinite);
      const ents = r.entropy.filter(Number.isFinite);
      saturation.textContent =
        `d_k = ${r.dk}${s.scale ? `, scores divided by √${r.dk}` : ", no scaling"}: ` +
        `mean largest weight ${fmt(sumOf(maxes) / maxes.length)}, mean row entropy ` +
        `${fmt(sumOf(ents) / ents.length)} nats (a near one-hot row has entropy near 0).`;
      drawCode(ids);
      drawPanels(ids);
      announce(ids);
      explain.textContent = "Select a cell of the tensor (click it, or Tab to it and use the arrow keys) to see the terms that made it.";
      s.cell = null;
    }

    function go(step) {
      const ids = labSteps(s);
      s.step = Math.max(0, Math.min(ids.length - 1, step));
      code.querySelectorAll("[data-lab-line]").forEach((b, k) => {
        if (k === s.step) b.setAttribute("aria-current", "step");
        else b.removeAttribute("aria-current");
        b.tabIndex = k === s.step ? 0 : -1;
      });
      panels.querySelectorAll("[data-lab-panel]").forEach((p, k) => (p.hidden = k !== s.step));
      const first = panels.querySelector(`[data-lab-panel="${ids[s.step]}"] td[data-row][data-col]`);
      if (first) first.tabIndex = 0;
      announce(ids);
    }

    // The terms that made one cell of one step.
    function terms(id, i, j) {
      const sum = (parts) => (parts.length > 8 ? [...parts.slice(0, 3), `… ${parts.length - 4} more terms …`, parts[parts.length - 1]] : parts).join(" + ");
      const v = r[id][i][j];
      if (id === "scores") {
        const parts = r.Q[i].map((q, c) => `${fmt(q)}×${fmt(r.K[j][c])}`);
        return `q(${tok[i]}) · k(${tok[j]}) = ${sum(parts)} = ${term(v)}`;
      }
      if (id === "scaled") {
        return s.scale
          ? `${term(r.scores[i][j])} / √${r.dk} = ${term(r.scores[i][j])} / ${fmt(r.dk ** 0.5)} = ${term(v)}`
          : `No scaling: the score ${term(v)} passes unchanged.`;
      }
      if (id === "masked") {
        if (!r.mask[i][j]) return `“${tok[j]}” is visible to “${tok[i]}”: the score ${term(v)} is kept.`;
        return s.blocked_row === i
          ? `Every key of row “${tok[i]}” is masked: its score becomes −∞.`
          : `“${tok[j]}” comes after “${tok[i]}”: its score becomes −∞.`;
      }
      if (id === "weights") {
        const row = r.masked[i];
        const exps = row.map((x) => (x === -Infinity ? "exp(−∞)" : `exp(${term(x)})`));
        if (row.every((x) => x === -Infinity)) {
          return `Every score of this row is −∞, so every exp(−∞) is 0 and the softmax divides 0 by 0: NaN. The package's masked_softmax returns 0 for such a row instead.`;
        }
        const num_ = row[j] === -Infinity ? 0 : Math.exp(row[j]);
        const den = sumOf(row.map((x) => (x === -Infinity ? 0 : Math.exp(x))));
        return `exp(s) / Σ exp = ${exps[j]} / (${sum(exps)}) = ${term(num_)} / ${term(den)} = ${term(v)}`;
      }
      if (id === "zeroed") {
        return r.mask[i][j]
          ? `“${tok[j]}” comes after “${tok[i]}”: its weight ${term(r.weights[i][j])} is set to 0 after the softmax, so the row sums to ${fmt(sumOf(r.zeroed[i]))}, not 1.`
          : `Kept: ${term(v)}.`;
      }
      if (id === "dropped") {
        const before = (s.mask_after ? r.zeroed : r.weights)[i][j];
        if (!s.training) return `Evaluation: dropout passes ${term(v)} unchanged.`;
        return data.keep[i][j]
          ? `Kept: ${term(before)} × 1/(1 − ${data.p}) = ${term(before)} × ${fmt(1 / (1 - data.p))} = ${term(v)}`
          : `Dropped by the fixed mask: ${term(before)} becomes 0.`;
      }
      const parts = r.dropped[i].map((w, k) => `${term(w)}×${fmt(r.V[k][j])}`);
      return `Σ weight × value = ${sum(parts)} = ${term(v)}`;
    }

    function statTerms(id, stat, i) {
      const row = r[id][i];
      if (stat === "max_weight") return `The largest weight of row “${tok[i]}”: ${term(r.max_weight[i])}.`;
      if (stat === "entropy")
        return `Entropy −Σ w ln w of row “${tok[i]}” = ${fmt(r.entropy[i])} nats (uniform over the visible keys would be ln ${row.filter((w) => w > 0).length || 1}).`;
      return `Row sum ${row.map(term).join(" + ")} = ${fmt(sumOf(row))}`;
    }

    function select(td) {
      const panel = td.closest("[data-lab-panel]");
      const id = panel.dataset.labPanel;
      panel.querySelectorAll("td[tabindex='0']").forEach((c) => (c.tabIndex = -1));
      panel.querySelectorAll("[aria-selected]").forEach((c) => c.removeAttribute("aria-selected"));
      td.tabIndex = 0;
      td.setAttribute("aria-selected", "true");
      const i = +td.dataset.row;
      const text = td.dataset.stat ? statTerms(id, td.dataset.stat, i) : terms(id, i, +td.dataset.col);
      explain.replaceChildren(el("strong", {}, `${tok[i]}, ${td.dataset.stat || (id === "context" ? `v[${td.dataset.col}]` : tok[+td.dataset.col])}: `), text);
      explain.dataset.cell = `${id} ${i} ${td.dataset.stat || td.dataset.col}`;
    }

    function onGridKey(ev, td) {
      const rowCells = [...td.parentElement.querySelectorAll("td")];
      const rows = [...td.closest("tbody").rows];
      const ri = rows.indexOf(td.parentElement);
      const ci = rowCells.indexOf(td);
      const moves = { ArrowLeft: [0, -1], ArrowRight: [0, 1], ArrowUp: [-1, 0], ArrowDown: [1, 0] };
      let target = null;
      if (moves[ev.key]) {
        const [dr, dc] = moves[ev.key];
        const row = rows[ri + dr];
        target = row && row.querySelectorAll("td")[ci + dc];
      } else if (ev.key === "Home") target = rowCells[0];
      else if (ev.key === "End") target = rowCells[rowCells.length - 1];
      else if (ev.key === "Enter" || ev.key === " ") target = td;
      if (!target) return;
      ev.preventDefault();
      ev.stopPropagation();
      target.focus();
      select(target);
    }

    root.addEventListener("keydown", (ev) => {
      const t = ev.target;
      const td = t.closest && t.closest("td[data-row]");
      if (td && panels.contains(td)) return onGridKey(ev, td);
      if (t.matches && t.matches("input, select, textarea")) return;
      const back = ev.key === "ArrowLeft" || (ev.key === "ArrowUp" && code.contains(t));
      const fwd = ev.key === "ArrowRight" || (ev.key === "ArrowDown" && code.contains(t));
      if (!back && !fwd) return;
      ev.preventDefault();
      go(s.step + (fwd ? 1 : -1));
      if (code.contains(t)) code.querySelectorAll("[data-lab-line]")[s.step].focus();
    });
    root.addEventListener("click", (ev) => {
      const t = ev.target;
      const line = t.closest("[data-lab-line]");
      const td = t.closest("td[data-row]");
      if (line) go(labSteps(s).indexOf(line.dataset.labLine));
      else if (td && panels.contains(td)) select(td);
    });
    panels.addEventListener("focusin", (ev) => {
      const td = ev.target.closest("td[data-row]");
      if (td && explain.dataset.cell !== `${td.closest("[data-lab-panel]").dataset.labPanel} ${td.dataset.row} ${td.dataset.stat || td.dataset.col}`) select(td);
    });
    prev.addEventListener("click", () => go(s.step - 1));
    next.addEventListener("click", () => go(s.step + 1));

    function onChange(ev) {
      const t = ev.target;
      const name = t.dataset && t.dataset.lab;
      if (name === "scale" || name === "mask_after" || name === "training") s[name] = t.checked;
      else if (name === "source") s.source = t.value;
      else if (name === "d_k") s.d_k = data.d_k[+t.value];
      else if (name === "blocked_row") s.blocked_row = t.value === "" ? null : +t.value;
      else return;
      update();
    }
    controls.addEventListener("change", onChange);
    dkInput.addEventListener("input", onChange);

    update();
    go(s.step);
  }

  function start() {
    const kinds = { playground: setup, lab: setupLab };
    for (const [kind, draw] of Object.entries(kinds)) {
      document.querySelectorAll(`.attn-widget[data-attn-kind="${kind}"]`).forEach((root) => {
        if (root.dataset.pgReady) return;
        root.dataset.pgReady = "1";
        E.addStylesheet(STYLESHEET, "playground", "attention-playground.css");
        root.querySelectorAll(":scope > .attn-fallback").forEach((fallback) => fallback.remove());
        try {
          draw(root);
        } catch (err) {
          root.append(el("p", { class: "attn-pg-status" }, `The ${kind} could not start: ${err}`));
          throw err;
        }
      });
    }
  }

  window.AttentionPlayground = { start };
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
