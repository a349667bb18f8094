/* KV-cache bytes against context length, by model and variant.
 *
 * Draws every .attn-widget[data-attn-kind="kv-budget"] from the JSON that
 * attention.kv_chart.kv_budget_chart() embeds in it: one grid of context
 * lengths and, for each model and variant, the cache's size in bytes at each
 * of them, every number computed by attention.kv_budget. This script only
 * places those numbers on the chart and prints them (formatBytes is
 * attention.kv_chart.format_bytes, rounding halves up as both do); it never
 * computes a cache size. Plain DOM and SVG, no libraries.
 *
 * As with the other widgets, the book's page loads this file once; a widget
 * shown anywhere else carries a copy with its stylesheet in STYLESHEET.
 */
(() => {
  "use strict";

  if (window.AttentionKV) {
    window.AttentionKV.start();
    return;
  }

  // The stylesheet's text when the widget carries this script itself
  // (attention.widgets fills it in); null in the book, whose page links the file.
  const STYLESHEET = null;

  const E = window.AttentionEngine;
  const { el, range } = E;

  // ---- Numbers as the package prints them ---------------------------------

  const UNITS = ["bytes", "KiB", "MiB", "GiB", "TiB"];
  const GIB = 2 ** 30;

  /** format_bytes: the largest binary unit the size fills, three significant figures. */
  function formatBytes(n) {
    let power = 0;
    while (power < UNITS.length - 1 && n >= 1024 ** (power + 1)) power++;
    if (power === 0) return `${n} bytes`;
    const value = n / 1024 ** power; // exact: a power of two divides an integer below 2^53
    const decimals = value < 10 ? 2 : value < 100 ? 1 : 0;
    return `${value.toFixed(decimals)} ${UNITS[power]}`;
  }

  /** A token count with thousands separators: 32,768. */
  const formatCount = (n) => n.toLocaleString("en-US");

  /** A tick on the token axis: 64, 512, 1K, 128K (K = 1024 tokens). */
  const formatTokens = (t) => (t >= 1024 && t % 1024 === 0 ? `${t / 1024}K` : String(t));

  /** A tick on a logarithmic bytes axis: a power of two in its unit, e.g. 16 MiB. */
  function formatPower(n) {
    let power = 0;
    while (power < UNITS.length - 1 && n >= 1024 ** (power + 1)) power++;
    return `${n / 1024 ** power} ${UNITS[power]}`;
  }

  /** A tick on a linear GiB axis: 0, 2.5, 20 GiB. */
  const formatGiB = (v) => `${Number(v.toPrecision(6))} GiB`;

  /** About `count` ticks from 0 to at least `top`, at 1, 2 or 5 times a power of ten. */
  function linearTicks(top, count = 5) {
    const raw = top / count;
    const base = 10 ** Math.floor(Math.log10(raw));
    const step = [1, 2, 5, 10].map((m) => m * base).find((s) => s >= raw);
    const n = Math.ceil(top / step - 1e-9);
    return range(n + 1).map((i) => i * step);
  }

  // ---- SVG ----------------------------------------------------------------------

  const NS = "http://www.w3.org/2000/svg";

  /** An SVG element with attributes and children (el() makes HTML elements). */
  function svg(tag, attrs, ...kids) {
    const node = document.createElementNS(NS, tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v != null && v !== false) node.setAttribute(k, String(v));
    }
    for (const kid of kids.flat(Infinity)) if (kid != null && kid !== false) node.append(kid);
    return node;
  }

  const PAD = { left: 72, right: 16, top: 14, bottom: 44 };

  // ---- One chart --------------------------------------------------------------

  function setup(root) {
    const data = JSON.parse(root.querySelector("script.attn-data").textContent);
    // On a narrow screen a smaller drawing, so that its text shrinks less.
    const narrow = root.clientWidth > 0 && root.clientWidth < 560;
    const W = narrow ? 400 : 640;
    const H = narrow ? 300 : 340;
    const id = `attn-kv-${Math.random().toString(36).slice(2, 8)}`;
    const tokens = data.tokens;
    const variantLabel = Object.fromEntries(data.variants.map((v) => [v.id, v.label]));
    const offered = new Set(data.models.flatMap((m) => m.variants.map((v) => v.id)));

    const check = (kind, value, label, checked, swatch) =>
      el(
        "label",
        { class: "attn-kv-choice" },
        el("input", { type: "checkbox", value, "data-kv": kind, checked }),
        swatch,
        el("span", {}, label),
      );
    const modelSwatch = (m) =>
      svg("svg", { class: "attn-kv-swatch", viewBox: "0 0 24 10", "aria-hidden": "true", style: `--kv-base: ${m.colour}` },
        svg("line", { x1: 1, y1: 5, x2: 23, y2: 5, class: "attn-kv-stroke" }));
    const variantSwatch = (v) =>
      svg("svg", { class: "attn-kv-swatch", viewBox: "0 0 24 10", "aria-hidden": "true" },
        svg("line", { x1: 1, y1: 5, x2: 23, y2: 5, class: `attn-kv-stroke attn-kv-v-${v}` }));

    const models = el(
      "fieldset",
      {},
      el("legend", {}, "Models"),
      data.models.map((m, i) => check("model", String(i), m.name, true, modelSwatch(m))),
    );
    const variants = el(
      "fieldset",
      {},
      el("legend", {}, "Variants"),
      data.variants
        .filter((v) => offered.has(v.id))
        .map((v) => check("variant", v.id, v.label, v.id === "published", variantSwatch(v.id))),
    );
    const scale = el(
      "fieldset",
      {},
      el("legend", {}, "Bytes axis"),
      ["linear", "log"].map((s) =>
        el(
          "label",
          { class: "attn-kv-choice" },
          el("input", { type: "radio", name: `${id}-scale`, value: s, "data-kv": "scale", checked: s === "linear" }),
          el("span", {}, s === "linear" ? "linear (GiB)" : "logarithmic"),
        ),
      ),
    );
    const slider = el("input", {
      type: "range",
      id: `${id}-at`,
      min: 0,
      max: tokens.length - 1,
      step: 1,
      value: tokens.indexOf(32768) >= 0 ? tokens.indexOf(32768) : tokens.length - 1,
      "data-kv": "at",
    });
    const summary = el("p", { class: "attn-kv-summary", "aria-live": "polite", "data-kv": "summary" });
    const readout = el("table", { class: "attn-kv-readout", "data-kv": "readout" });
    const plot = svg("svg", {
      class: "attn-kv-plot",
      viewBox: `0 0 ${W} ${H}`,
      role: "img",
      "data-kv": "plot",
    });
    const caption = el(
      "figcaption",
      {},
      `KV cache of ${data.batchSize} sequence${data.batchSize > 1 ? "s" : ""} at ${data.dtypeBytes} bytes per number, against context length`,
    );
    root.append(
      el(
        "figure",
        { class: "attn-kv" },
        caption,
        el("div", { class: "attn-kv-controls" }, models, variants, scale),
        plot,
        el(
          "div",
          { class: "attn-kv-at" },
          el("label", { for: slider.id }, "Context length "),
          slider,
        ),
        summary,
        el("div", { class: "attn-kv-scroll", tabindex: "0", role: "region", "aria-label": "Sizes at the chosen context length" }, readout),
      ),
    );

    const chosen = (kind) =>
      [...root.querySelectorAll(`input[data-kv="${kind}"]:checked`)].map((i) => i.value);

    /** The lines to draw: every chosen model with every chosen variant it has. */
    function lines() {
      const wanted = new Set(chosen("variant"));
      return chosen("model").flatMap((i) => {
        const m = data.models[+i];
        return m.variants
          .filter((v) => wanted.has(v.id))
          .map((v) => ({ model: +i, name: m.name, colour: m.colour, ...v }));
      });
    }

    const xOf = (() => {
      const lo = Math.log2(tokens[0]);
      const hi = Math.log2(tokens[tokens.length - 1]);
      return (t) => PAD.left + ((Math.log2(t) - lo) / (hi - lo)) * (W - PAD.left - PAD.right);
    })();

    /** The bytes axis for these lines: a function to y and the ticks, as [value, label]. */
    function bytesAxis(drawn, log) {
      const all = drawn.flatMap((l) => l.bytes);
      const bottom = H - PAD.bottom;
      const height = H - PAD.top - PAD.bottom;
      if (log) {
        const lo = Math.floor(Math.log2(all.length ? Math.min(...all) : 2 ** 20));
        const hi = Math.max(lo + 1, Math.ceil(Math.log2(all.length ? Math.max(...all) : GIB)));
        const every = Math.max(1, Math.ceil((hi - lo) / 6));
        const first = Math.ceil(lo / every) * every;
        const ticks = range(Math.floor((hi - first) / every) + 1).map((k) => 2 ** (first + k * every));
        const y = (b) => bottom - ((Math.log2(b) - lo) / (hi - lo)) * height;
        return { y, ticks: ticks.map((b) => [b, formatPower(b)]) };
      }
      const top = all.length ? Math.max(...all) / GIB : 1;
      const ticks = linearTicks(top);
      const max = ticks[ticks.length - 1];
      const y = (b) => bottom - (b / GIB / max) * height;
      return { y, ticks: ticks.map((v) => [v * GIB, formatGiB(v)]) };
    }

    function draw() {
      const drawn = lines();
      const log = chosen("scale")[0] === "log";
      const at = +slider.value;
      const { y, ticks } = bytesAxis(drawn, log);
      const every = narrow ? 4 : 2; // doublings between labelled token counts
      const xTicks = tokens.filter(
        (t) => Math.log2(t / tokens[0]) % every === 0 || t === tokens[tokens.length - 1],
      );
      const left = PAD.left;
      const right = W - PAD.right;
      const bottom = H - PAD.bottom;
      plot.setAttribute(
        "aria-label",
        drawn.length
          ? `Line chart: ${drawn.map((l) => `${l.name}, ${variantLabel[l.id]}`).join("; ")}. ` +
              `Tokens from ${formatCount(tokens[0])} to ${formatCount(tokens[tokens.length - 1])} on a log scale.`
          : "Empty chart: choose at least one model and one variant.",
      );
      const parts = [
        svg(
          "g",
          { class: "attn-kv-grid" },
          ticks.map(([b]) => svg("line", { x1: left, x2: right, y1: y(b), y2: y(b) })),
          xTicks.map((t) => svg("line", { x1: xOf(t), x2: xOf(t), y1: PAD.top, y2: bottom })),
        ),
        svg(
          "g",
          { class: "attn-kv-ticks" },
          ticks.map(([b, label]) => svg("text", { x: left - 6, y: y(b), "text-anchor": "end", "dominant-baseline": "middle" }, label)),
          xTicks.map((t) => svg("text", { x: xOf(t), y: bottom + 16, "text-anchor": "middle" }, formatTokens(t))),
          svg("text", { x: (left + right) / 2, y: H - 6, "text-anchor": "middle", class: "attn-kv-axis" }, "context length (tokens, log scale)"),
        ),
        svg("line", { class: "attn-kv-axisline", x1: left, x2: right, y1: bottom, y2: bottom }),
        svg("line", { class: "attn-kv-axisline", x1: left, x2: left, y1: PAD.top, y2: bottom }),
        svg("line", { class: "attn-kv-cursor", "data-kv": "cursor", x1: xOf(tokens[at]), x2: xOf(tokens[at]), y1: PAD.top, y2: bottom }),
        drawn.map((l) =>
          svg(
            "g",
            { class: "attn-kv-series", style: `--kv-base: ${l.colour}` },
            svg("path", {
              class: `attn-kv-line attn-kv-stroke attn-kv-v-${l.id}`,
              "data-kv-line": `${l.model}:${l.id}`,
              d: l.bytes.map((b, i) => `${i ? "L" : "M"}${xOf(tokens[i]).toFixed(2)} ${y(b).toFixed(2)}`).join(" "),
            }),
            svg("circle", { class: "attn-kv-dot", "data-kv-dot": `${l.model}:${l.id}`, cx: xOf(tokens[at]).toFixed(2), cy: y(l.bytes[at]).toFixed(2), r: 3.5 }),
          ),
        ),
        drawn.length
          ? null
          : svg("text", { x: (left + right) / 2, y: (PAD.top + bottom) / 2, "text-anchor": "middle" }, "Choose at least one model and one variant."),
      ];
      plot.replaceChildren(...parts.flat().filter(Boolean));
      const t = tokens[at];
      slider.setAttribute("aria-valuetext", `${formatCount(t)} tokens`);
      summary.textContent = drawn.length
        ? `At ${formatCount(t)} tokens: ${drawn.length} line${drawn.length > 1 ? "s" : ""}, largest ${formatBytes(Math.max(...drawn.map((l) => l.bytes[at])))}.`
        : `At ${formatCount(t)} tokens: no line chosen.`;
      readout.replaceChildren(
        el("caption", {}, `Cache at ${formatCount(t)} tokens`),
        el("thead", {}, el("tr", {}, ["model", "variant", "size", "bytes"].map((h) => el("th", { scope: "col" }, h)))),
        el(
          "tbody",
          {},
          drawn.map((l) =>
            el(
              "tr",
              { "data-kv-row": `${l.model}:${l.id}`, "data-bytes": String(l.bytes[at]), style: `--kv-base: ${l.colour}` },
              el("th", { scope: "row" }, l.name),
              el("td", { title: l.detail }, variantLabel[l.id]),
              el("td", { "data-kv-size": "" }, formatBytes(l.bytes[at])),
              el("td", {}, formatCount(l.bytes[at])),
            ),
          ),
        ),
      );
      root.dataset.kvAt = String(t);
      root.dataset.kvLines = drawn.map((l) => `${l.model}:${l.id}`).join(",");
      root.dataset.kvScale = log ? "log" : "linear";
    }

    /** The pointer over the chart picks the nearest context length of the grid. */
    function pick(event) {
      const box = plot.getBoundingClientRect();
      const x = ((event.clientX - box.left) / box.width) * W;
      let best = 0;
      tokens.forEach((t, i) => {
        if (Math.abs(xOf(t) - x) < Math.abs(xOf(tokens[best]) - x)) best = i;
      });
      if (String(best) !== slider.value) {
        slider.value = String(best);
        draw();
      }
    }

    root.addEventListener("change", (ev) => {
      if (ev.target.matches("input[data-kv]")) draw();
    });
    slider.addEventListener("input", draw);
    plot.addEventListener("pointermove", pick);
    plot.addEventListener("pointerdown", pick);
    draw();
    root.dataset.kvReady = "1";
  }

  function start() {
    document.querySelectorAll('.attn-widget[data-attn-kind="kv-budget"]').forEach((root) => {
      if (root.dataset.kvStarted) return;
      root.dataset.kvStarted = "1";
      E.addStylesheet(STYLESHEET, "kv-budget", "attention-kv-budget.css");
      root.querySelectorAll(":scope > .attn-fallback").forEach((fallback) => fallback.remove());
      setup(root);
      // A page that shows a static copy of the chart for readers without
      // scripts (a cell tagged attn-kv-static) hides it once a chart draws.
      document.documentElement.classList.add("attn-kv-ready");
    });
  }

  window.AttentionKV = { start, formatBytes, formatTokens };
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
