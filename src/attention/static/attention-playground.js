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

  const range = (n) => Array.from({ length: n }, (_, i) => i);
  const copy = (m) => m.map((row) => row.slice());
  const eye = (n) => range(n).map((i) => range(n).map((k) => (i === k ? 1 : 0)));
  // (T, d_in) @ (d_in, d_out) -> (T, d_out)
  const matmul = (A, B) =>
    A.map((row) => B[0].map((_, k) => row.reduce((sum, a, i) => sum + a * B[i][k], 0)));

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

  /** Stable softmax; a row masked everywhere gets all-zero weights. */
  function softmax(row) {
    const max = Math.max(...row);
    if (max === -Infinity) return row.map(() => 0);
    const e = row.map((s) => Math.exp(s - max));
    const sum = e.reduce((a, b) => a + b, 0);
    return e.map((v) => v / sum);
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

  // ---- Colour --------------------------------------------------------------

  const STOPS = [
    [68, 1, 84],
    [59, 82, 139],
    [33, 145, 140],
    [94, 201, 98],
    [253, 231, 37],
  ];

  /** A viridis-like colour for t in [0, 1], and the text colour that reads on it. */
  function viridis(t) {
    const x = Math.min(1, Math.max(0, t || 0)) * (STOPS.length - 1);
    const i = Math.min(STOPS.length - 2, Math.floor(x));
    const rgb = STOPS[i].map((a, k) => Math.round(a + (x - i) * (STOPS[i + 1][k] - a)));
    const lin = rgb.map((c) => ((c /= 255) <= 0.04045 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4));
    const L = 0.2126 * lin[0] + 0.7152 * lin[1] + 0.0722 * lin[2];
    return [`rgb(${rgb.join(", ")})`, L > 0.179 ? "#000" : "#fff"];
  }

  // ---- DOM -----------------------------------------------------------------

  function el(tag, props, ...kids) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(props || {})) {
      if (v == null || v === false) continue;
      if (k === "class") e.className = v;
      else if (k === "style") e.style.cssText = v;
      else e.setAttribute(k, v === true ? "" : v);
    }
    for (const kid of kids.flat()) if (kid != null) e.append(kid);
    return e;
  }

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
          rowsOf(A, (v, i, k) => {
            const [bg, fg] = viridis(v / top);
            return num(v, {
              "data-row": i,
              "data-col": k,
              style: `background: ${bg}; color: ${fg}`,
              class: s.causal && k > i && "attn-pg-masked",
            });
          }),
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

  /** Add the stylesheet to the document once, unless the page links it. */
  function addStylesheet() {
    if (!STYLESHEET) return;
    const present = "style[data-attn-stylesheet='playground'], link[href*='attention-playground.css']";
    if (document.querySelector(present)) return;
    document.head.append(el("style", { "data-attn-stylesheet": "playground" }, STYLESHEET));
  }

  function start() {
    document.querySelectorAll('.attn-widget[data-attn-kind="playground"]').forEach((root) => {
      if (root.dataset.pgReady) return;
      root.dataset.pgReady = "1";
      addStylesheet();
      root.querySelectorAll(":scope > .attn-fallback").forEach((fallback) => fallback.remove());
      try {
        setup(root);
      } catch (err) {
        root.append(el("p", { class: "attn-pg-status" }, `The playground could not start: ${err}`));
        throw err;
      }
    });
  }

  window.AttentionPlayground = { start };
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
