/* Chapter 12's trained attention-only model, run in the browser.
 *
 * Draws every .attn-widget[data-attn-kind="model-lab"] from the JSON that
 * attention.model_lab.model_lab() embeds in it: the model's float32 weights
 * (base64), its symbols, and reference cases the package computed. The
 * forward pass is that of attention.induction.AttentionOnlyTransformer:
 * token plus position embeddings, causal multi-head attention layers added
 * to the residual stream, unembedding. The scores are those of
 * attention.induction_scores; the OV circuit that of
 * attention.model_lab.ov_circuit. The browser tests hold every number to the
 * package. Plain DOM, no libraries.
 *
 * As with the other widget scripts, the first copy to run defines
 * window.AttentionModelLab; every later copy only starts the new widgets.
 */
(() => {
  "use strict";

  if (window.AttentionModelLab) {
    window.AttentionModelLab.start();
    return;
  }

  // The stylesheet's text when the widget carries this script itself
  // (attention.widgets fills it in); null in the book, whose page links the file.
  const STYLESHEET = null;

  // The shared arithmetic and DOM helpers (attention-engine.js, loaded first):
  // the same stable softmax as every other widget, el, viridis.
  const E = window.AttentionEngine;
  const { range, softmax, el, viridis } = E;

  // ---- The model -----------------------------------------------------------

  /** A tensor of the export: little-endian float32 bytes in base64. */
  function decode(entry) {
    const bytes = Uint8Array.from(atob(entry.data), (c) => c.charCodeAt(0));
    const view = new DataView(bytes.buffer);
    const out = new Float64Array(bytes.length / 4);
    for (let i = 0; i < out.length; i++) out[i] = view.getFloat32(4 * i, true);
    return { shape: entry.shape, data: out };
  }

  function loadModel(exported) {
    if (exported.format !== "float32-le-base64") throw new Error(`unknown format ${exported.format}`);
    const t = (name) => decode(exported.tensors[name]);
    const cfg = exported.config;
    return {
      cfg,
      tok: t("tok_emb"),
      pos: t("pos_emb"),
      layers: range(cfg.n_layers).map((n) => ({
        Wq: t(`layers.${n}.W_query`),
        Wk: t(`layers.${n}.W_key`),
        Wv: t(`layers.${n}.W_value`),
        Wo: t(`layers.${n}.out_proj.weight`),
        bo: t(`layers.${n}.out_proj.bias`),
      })),
      out: t("out_head"),
    };
  }

  /** rows (T, in) through an nn.Linear weight (out, in) and optional bias (out,). */
  function linear(rows, W, bias) {
    const [nOut, nIn] = W.shape;
    return rows.map((x) => {
      const y = new Float64Array(nOut);
      for (let o = 0; o < nOut; o++) {
        let s = bias ? bias.data[o] : 0;
        for (let i = 0; i < nIn; i++) s += W.data[o * nIn + i] * x[i];
        y[o] = s;
      }
      return y;
    });
  }

  /** Logits (T, V), scores and weights (N, H, T, T) for token ids. */
  function forward(model, ids) {
    const { cfg } = model;
    const C = cfg.emb_dim;
    const H = cfg.n_heads;
    const D = C / H;
    const T = ids.length;
    let h = ids.map((id, t) => {
      const x = new Float64Array(C);
      for (let c = 0; c < C; c++) x[c] = model.tok.data[id * C + c] + model.pos.data[t * C + c];
      return x;
    });
    const scores = [];
    const weights = [];
    for (const layer of model.layers) {
      const q = linear(h, layer.Wq);
      const k = linear(h, layer.Wk);
      const v = linear(h, layer.Wv);
      const ctx = range(T).map(() => new Float64Array(C));
      const ls = [];
      const lw = [];
      for (let head = 0; head < H; head++) {
        const off = head * D;
        const s = range(T).map((i) =>
          range(T).map((j) => {
            if (j > i) return -Infinity;
            let dot = 0;
            for (let d = 0; d < D; d++) dot += q[i][off + d] * k[j][off + d];
            return dot / Math.sqrt(D);
          }),
        );
        const w = s.map(softmax);
        for (let i = 0; i < T; i++) {
          for (let j = 0; j <= i; j++) {
            for (let d = 0; d < D; d++) ctx[i][off + d] += w[i][j] * v[j][off + d];
          }
        }
        ls.push(s);
        lw.push(w);
      }
      const out = linear(ctx, layer.Wo, layer.bo);
      h = h.map((x, t) => x.map((value, c) => value + out[t][c]));
      scores.push(ls);
      weights.push(lw);
    }
    const logits = linear(h, model.out).map((row) => Array.from(row));
    return { logits, scores, weights };
  }

  /** attention.model_lab.period: the smallest L in [2, T) with x[t] = x[t - L]. */
  function period(ids) {
    for (let n = 2; n < ids.length; n++) {
      if (ids.every((id, t) => t < n || id === ids[t - n])) return n;
    }
    return null;
  }

  const mean = (xs) => xs.reduce((a, b) => a + b, 0) / xs.length;
  // attention.induction_scores.previous_token_score: mean of w[t][t-1], t >= 1.
  const previousScore = (w) => mean(range(w.length - 1).map((t) => w[t + 1][t]));
  // attention.induction_scores.induction_score: mean of w[t][t-L+1], t >= L.
  const inductionScore = (w, L) => mean(range(w.length - L).map((i) => w[L + i][i + 1]));

  /** attention.model_lab.ov_circuit: (V, V) logits each source token adds via one head. */
  function ovCircuit(model, n, head) {
    const { cfg } = model;
    const C = cfg.emb_dim;
    const V = cfg.vocab_size;
    const D = C / cfg.n_heads;
    const { Wv, Wo } = model.layers[n];
    const rows = range(V).map((s) => model.tok.data.subarray(s * C, (s + 1) * C));
    const val = rows.map((x) => range(D).map((d) => {
      let sum = 0;
      for (let i = 0; i < C; i++) sum += Wv.data[(head * D + d) * C + i] * x[i];
      return sum;
    }));
    const moved = val.map((vd) => {
      const y = new Float64Array(C);
      for (let o = 0; o < C; o++) {
        let sum = 0;
        for (let d = 0; d < D; d++) sum += Wo.data[o * C + head * D + d] * vd[d];
        y[o] = sum;
      }
      return y;
    });
    return linear(moved, model.out).map((row) => Array.from(row));
  }

  const argmax = (row) => row.reduce((best, v, i) => (v > row[best] ? i : best), 0);
  const topK = (row, k) =>
    range(row.length)
      .sort((a, b) => row[b] - row[a])
      .slice(0, k);

  // ---- Input ---------------------------------------------------------------

  /** Token ids of the typed text, or an Error saying what is wrong. */
  function encode(text, symbols, maxTokens) {
    const ids = [];
    let place = 0;
    for (const ch of text) {
      place++;
      if (/\s/.test(ch)) continue;
      const id = symbols.indexOf(ch);
      if (id < 0) return new Error(`“${ch}” (character ${place}) is not a token of this model.`);
      ids.push(id);
    }
    if (ids.length === 0) return new Error("Type at least one token.");
    if (ids.length > maxTokens) {
      return new Error(`${ids.length} tokens: the model reads at most ${maxTokens}.`);
    }
    return ids;
  }

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

  // ---- Drawing -------------------------------------------------------------

  const fmt = (x, d = 3) => (x === null ? "—" : x.toFixed(d).replace("-", "−"));
  let uid = 0;

  /** A (T, T) matrix as a table of coloured cells; values in data-value. */
  function matrixTable(caption, matrix, labels, name, low, high) {
    const head = el("tr", {}, el("th", { scope: "col", class: "attn-ml-corner" }, "q╲k"));
    labels.forEach((s, j) => head.append(el("th", { scope: "col" }, s)));
    const body = el("tbody");
    matrix.forEach((row, i) => {
      const tr = el("tr", {}, el("th", { scope: "row" }, labels[i]));
      row.forEach((v, j) => {
        if (v === -Infinity) {
          tr.append(el("td", { class: "attn-ml-masked", "data-row": i, "data-col": j, "data-value": "-inf" }));
          return;
        }
        const t = high > low ? (v - low) / (high - low) : 0.5;
        tr.append(
          el("td", {
            style: `background-color:${viridis(t)}`,
            title: `query ${i} (${labels[i]}), key ${j} (${labels[j]}): ${v.toFixed(4)}`,
            "data-row": i,
            "data-col": j,
            "data-value": String(v),
          }),
        );
      });
      body.append(tr);
    });
    const table = el("table", { class: "attn-ml-matrix", "data-ml-out": name },
      el("caption", {}, caption), el("thead", {}, head), body);
    return el("div", { class: "attn-ml-scroll", tabindex: 0, role: "region", "aria-label": caption }, table);
  }

  function setup(root) {
    const data = JSON.parse(root.querySelector(":scope > script.attn-data").textContent);
    const model = loadModel(data.model);
    const { cfg } = model;
    const symbols = data.symbols;
    const maxT = cfg.context_length;
    const id = `attn-ml-${++uid}`;
    const ov = new Map();
    const ovOf = (n, h) => {
      const key = `${n},${h}`;
      if (!ov.has(key)) ov.set(key, ovCircuit(model, n, h));
      return ov.get(key);
    };

    const input = el("input", {
      type: "text", id: `${id}-input`, class: "attn-ml-input", "data-ml": "text",
      spellcheck: "false", autocomplete: "off", "aria-describedby": `${id}-help ${id}-status`,
    });
    const random = el("button", { type: "button", class: "attn-ml-button", "data-ml": "random" },
      "Random repeated string");
    const help = el("p", { id: `${id}-help`, class: "attn-ml-help" },
      `Tokens: the ${symbols.length} symbols a–z, A–Z, 0–9, ! and ?, one token per character ` +
      `(spaces are skipped); 1 to ${maxT} tokens.`);
    const status = el("p", { id: `${id}-status`, class: "attn-ml-status", role: "status", "data-ml-out": "status" });
    const heads = el("div", { class: "attn-ml-heads", "data-ml-out": "heads" });
    const preds = el("div", { class: "attn-ml-preds", "data-ml-out": "predictions" });
    const choice = el("select", { id: `${id}-head`, "data-ml": "head" },
      range(cfg.n_layers).flatMap((n) => range(cfg.n_heads).map((h) =>
        el("option", { value: `${n},${h}` }, `layer ${n}, head ${h}`))));
    choice.value = `${cfg.n_layers - 1},0`;
    const inspect = el("div", { class: "attn-ml-inspect", "data-ml-out": "inspect" });
    const outputs = el("div", { class: "attn-ml-outputs" },
      el("h3", {}, "Every head's attention"), heads,
      el("h3", {}, "Inspect one head"),
      el("p", {}, el("label", { for: `${id}-head` }, "Head "), choice), inspect,
      el("h3", {}, "Next-token predictions"), preds);

    root.append(el("div", { class: "attn-ml" },
      el("div", { class: "attn-ml-controls" },
        el("label", { for: `${id}-input` }, "Sequence"), input, random),
      help, status, outputs));

    let result = null;

    function drawInspect() {
      if (!result) return;
      const [n, h] = choice.value.split(",").map(Number);
      const labels = result.ids.map((i) => symbols[i]);
      const s = result.scores[n][h];
      const shown = s.flat().filter((v) => v !== -Infinity);
      const M = ovOf(n, h);
      const copies = range(symbols.length).filter((src) => argmax(M[src]) === src).length;
      const seen = [...new Set(result.ids)];
      const ovBody = el("tbody");
      for (const src of seen) {
        const top = topK(M[src], 3);
        ovBody.append(el("tr", { "data-source": src },
          el("th", { scope: "row" }, symbols[src]),
          top.map((o) => el("td", { "data-output": o, "data-value": String(M[src][o]) },
            `${symbols[o]} (${fmt(M[src][o], 2)})`))));
      }
      inspect.replaceChildren(
        el("h4", {}, "Where it looks: the QK scores"),
        el("p", {}, "Each query's scores q·k/√d over the keys it may see, before the softmax ",
          "(brighter = higher; the upper triangle is masked). The softmax of each row is this head's ",
          "pattern above."),
        matrixTable(`Layer ${n}, head ${h}: scores q·k/√d`, s, labels, "qk", Math.min(...shown), Math.max(...shown)),
        el("h4", {}, "What it moves: the OV circuit"),
        el("p", { "data-ml-out": "copying" },
          `If this head put all its weight on a token, its value and output projections would add `,
          `these logits most (token embedding → W_V → W_O → unembedding). The top output is the `,
          `source token itself for ${copies} of ${symbols.length} tokens`,
          copies > symbols.length / 2 ? ": this head copies." : "."),
        el("div", { class: "attn-ml-scroll", tabindex: 0, role: "region", "aria-label": "OV circuit" },
          el("table", { class: "attn-ml-ov", "data-ml-out": "ov" },
            el("caption", {}, `Layer ${n}, head ${h}: the top three output tokens of each source token`),
            el("thead", {}, el("tr", {}, el("th", { scope: "col" }, "source"),
              ["1st", "2nd", "3rd"].map((x) => el("th", { scope: "col" }, x)))),
            ovBody)),
      );
    }

    function update() {
      const ids = encode(input.value, symbols, maxT);
      if (ids instanceof Error) {
        result = null;
        root.attnModelLab = { error: ids.message };
        status.textContent = `Cannot run: ${ids.message}`;
        status.classList.add("attn-ml-error");
        outputs.hidden = true;
        return;
      }
      const out = forward(model, ids);
      const L = period(ids);
      const previous = ids.length >= 2 ? out.weights.map((l) => l.map(previousScore)) : null;
      const induction = L === null ? null : out.weights.map((l) => l.map((w) => inductionScore(w, L)));
      result = { ids, period: L, previous, induction, ...out };
      root.attnModelLab = result;
      status.classList.remove("attn-ml-error");
      status.textContent = `${ids.length} tokens. ` + (L === null
        ? "The sequence does not repeat itself, so there is no induction score."
        : `The sequence repeats with period ${L}: the induction score reads w[t, t − ${L - 1}].`);
      outputs.hidden = false;
      const labels = ids.map((i) => symbols[i]);
      heads.replaceChildren(...range(cfg.n_layers).flatMap((n) => range(cfg.n_heads).map((h) => {
        const parts = [`Layer ${n}, head ${h}`];
        if (previous) parts.push(`previous-token ${fmt(previous[n][h])}`);
        if (induction) parts.push(`induction ${fmt(induction[n][h])}`);
        const fig = matrixTable(parts.join(" · "), out.weights[n][h], labels, "weights", 0, 1);
        fig.dataset.layer = n;
        fig.dataset.head = h;
        return fig;
      })));
      const rows = ids.map((idx, t) => {
        const p = softmax(out.logits[t]);
        const best = argmax(p);
        const next = t + 1 < ids.length ? symbols[ids[t + 1]] : "";
        const right = next && symbols[best] === next;
        return el("tr", { "data-pos": t },
          el("th", { scope: "row" }, String(t)), el("td", {}, symbols[idx]),
          el("td", { "data-pred": best }, symbols[best]), el("td", {}, fmt(p[best], 2)),
          el("td", {}, next ? (right ? `${next} ✓` : next) : "—"));
      });
      preds.replaceChildren(el("div", { class: "attn-ml-scroll", tabindex: 0, role: "region",
        "aria-label": "Next-token predictions" },
        el("table", { class: "attn-ml-table" },
          el("caption", {}, "At each position, the model's most likely next token"),
          el("thead", {}, el("tr", {}, ["position", "token", "predicted next", "probability", "actual next"]
            .map((x) => el("th", { scope: "col" }, x)))),
          el("tbody", {}, rows))));
      drawInspect();
    }

    let draws = 0;
    random.addEventListener("click", () => {
      const rand = mulberry32(0x5eed + ++draws);
      const L = 4 + Math.floor(rand() * (Math.floor(maxT / 2) - 3));
      const first = range(L).map(() => symbols[Math.floor(rand() * symbols.length)]).join("");
      input.value = first + first;
      update();
    });
    input.addEventListener("input", update);
    choice.addEventListener("change", drawInspect);
    input.value = data.cases[0].text;
    update();
    root.dataset.mlReadyMs = String(performance.now());
  }

  function start() {
    document.querySelectorAll('.attn-widget[data-attn-kind="model-lab"]').forEach((root) => {
      if (root.dataset.mlStarted) return;
      root.dataset.mlStarted = "1";
      E.addStylesheet(STYLESHEET, "model-lab", "attention-model.css");
      root.querySelectorAll(":scope > .attn-fallback").forEach((fallback) => fallback.remove());
      try {
        setup(root);
      } catch (err) {
        root.append(el("p", { class: "attn-ml-status" }, `The model could not start: ${err}`));
        throw err;
      }
    });
  }

  window.AttentionModelLab = { start, forward, loadModel, period, ovCircuit };
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
