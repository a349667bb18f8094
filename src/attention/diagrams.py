"""The book's explanatory diagrams, drawn as inline SVG from the package's own numbers.

Each function returns a :class:`Diagram`: SVG markup plus a description in
words (the figure's text alternative). Nothing is typed by hand that the
package computes: shapes come from real tensors, strides from ``stride()``,
weights from :func:`attention.masked_softmax`, tiles from
:mod:`attention.flash`, layer names from a real
:class:`attention.gpt.TransformerBlock`.

Every diagram follows one colour rule, so it reads on a light and on a dark
page: text, lines and arrows are drawn in ``currentColor`` (the page's text
colour), and areas are tinted with a colour of
:data:`attention.shapes.PALETTE` at a fill opacity of at most
:data:`MAX_TINT`. Text never relies on a tint to be read.

* :func:`encoder_decoder` (chapter 1): an RNN encoder-decoder, without and
  with attention.
* :func:`qkv_flow` (chapter 4): embeddings to context vectors through
  queries, keys and values, with shapes.
* :func:`mask_then_softmax` (chapter 5): ``-inf`` becomes 0, rows renormalise.
* :func:`head_split` (chapter 8): view, transpose, and why ``contiguous``.
* :func:`prenorm_block` (chapter 11): the pre-norm transformer block.
* :func:`flash_tiling` (chapter 13): tiles of queries against tiles of keys,
  with the running maximum and sum.
* :func:`latent_attention_flow` (chapter 14): multi-head latent attention,
  what its cache holds, and the absorbed form.
* :func:`delta_rule_update` (chapter 14): one step of the gated delta rule on
  real numbers, beside linear attention's write.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor

from attention import _checks
from attention.functional import causal_mask, masked_softmax
from attention.latent import (
    LatentCache,
    LatentConfig,
    MultiHeadLatentAttention,
    cache_numbers_per_token,
)
from attention.linear_attention import delta_rule_recurrent
from attention.shapes import PALETTE

#: The largest fill opacity of a tinted area: text on it keeps the page's contrast.
MAX_TINT = 0.35
_FONT = 13  # px, the diagrams' text size
_SMALL = 11  # px, numbers inside cells
_BLUE, _ORANGE, _GREEN, _RED, _PURPLE, _BROWN = PALETTE


@dataclass(frozen=True)
class Diagram:
    """A drawn diagram: inline SVG and its text alternative.

    Attributes:
        name: A short identifier (``"head-split"``), unique in the book.
        svg: The ``<svg>`` element, with ``role="img"``, a ``<title>`` and a
            ``<desc>``.
        title: The figure's accessible name (its ``<title>``).
        description: What the figure shows, in words (its ``<desc>``).
    """

    name: str
    svg: str
    title: str
    description: str

    def to_html(self) -> str:
        """The diagram as an HTML ``<figure>``."""
        return f'<figure class="attn-diagram" style="margin:0.5rem 0">{self.svg}</figure>'

    def _repr_html_(self) -> str:
        return self.to_html()

    def __repr__(self) -> str:
        return f"Diagram({self.name!r}: {self.title})"


@dataclass
class _Canvas:
    """SVG elements in the diagrams' colour rule, collected in drawing order."""

    width: float
    height: float
    parts: list[str] = field(default_factory=list)

    def box(
        self,
        x: float,
        y: float,
        w: float,
        h: float,
        tint: str | None = None,
        *,
        opacity: float = MAX_TINT,
        dashed: bool = False,
        radius: float = 3.0,
    ) -> None:
        """A rectangle outlined in the text colour, optionally tinted."""
        fill = (
            f'fill="{tint}" fill-opacity="{min(opacity, MAX_TINT):.2f}"' if tint else 'fill="none"'
        )
        dash = ' stroke-dasharray="4 3"' if dashed else ""
        self.parts.append(
            f'<rect x="{x:.1f}" y="{y:.1f}" width="{w:.1f}" height="{h:.1f}" rx="{radius:.0f}" '
            f'{fill} stroke="currentColor"{dash}/>'
        )

    def text(
        self,
        x: float,
        y: float,
        words: str,
        *,
        size: int = _FONT,
        anchor: str = "middle",
        bold: bool = False,
        italic: bool = False,
    ) -> None:
        """Text in the page's colour; ``y`` is the baseline."""
        style = (' font-weight="bold"' if bold else "") + (' font-style="italic"' if italic else "")
        self.parts.append(
            f'<text x="{x:.1f}" y="{y:.1f}" font-size="{size}" text-anchor="{anchor}" '
            f'fill="currentColor"{style}>{html.escape(words)}</text>'
        )

    def line(
        self, points: Sequence[tuple[float, float]], *, arrow: bool = True, dashed: bool = False
    ) -> None:
        """A polyline through ``points``, with an arrowhead at its end."""
        path = " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
        dash = ' stroke-dasharray="4 3"' if dashed else ""
        self.parts.append(
            f'<polyline points="{path}" fill="none" stroke="currentColor" '
            f'stroke-width="1.3"{dash}/>'
        )
        if arrow:
            (x0, y0), (x1, y1) = points[-2], points[-1]
            angle = math.atan2(y1 - y0, x1 - x0)
            tip = [
                (x1 - 7 * math.cos(angle + s * 0.45), y1 - 7 * math.sin(angle + s * 0.45))
                for s in (-1, 1)
            ]
            corners = " ".join(f"{x:.1f},{y:.1f}" for x, y in [(x1, y1), *tip])
            self.parts.append(f'<polygon points="{corners}" fill="currentColor"/>')

    def circle(self, x: float, y: float, r: float, tint: str | None = None) -> None:
        """A circle outlined in the text colour, optionally tinted."""
        fill = f'fill="{tint}" fill-opacity="{MAX_TINT:.2f}"' if tint else 'fill="none"'
        self.parts.append(
            f'<circle cx="{x:.1f}" cy="{y:.1f}" r="{r:.1f}" {fill} stroke="currentColor"/>'
        )

    def render(self, name: str, title: str, description: str) -> Diagram:
        """The finished :class:`Diagram`."""
        w, h = math.ceil(self.width), math.ceil(self.height)
        svg = (
            f'<svg xmlns="http://www.w3.org/2000/svg" role="img" width="{w}" height="{h}" '
            f'viewBox="0 0 {w} {h}" font-family="sans-serif" '
            'style="max-width:100%;height:auto;display:block">'
            f"<title>{html.escape(title)}</title><desc>{html.escape(description)}</desc>"
            f"{''.join(self.parts)}</svg>"
        )
        return Diagram(name, svg, title, description)


def _sub(n: int) -> str:
    """``n`` as subscript digits."""
    return str(n).translate(str.maketrans("0123456789", "₀₁₂₃₄₅₆₇₈₉"))


# -- Chapter 1 -------------------------------------------------------------------


def encoder_decoder(*, tokens: int = 4, hidden_size: int | None = None) -> Diagram:
    """An RNN encoder-decoder without attention (top) and with it (bottom).

    Args:
        tokens: Source (and output) length drawn. Default: 4.
        hidden_size: The state width N written on the bottleneck. Default:
            :class:`attention.rnn.Seq2SeqConfig`'s ``hidden_size``.

    Returns:
        A :class:`Diagram`.

    Example:
        >>> "64 numbers" in encoder_decoder().description
        True
    """
    from attention.rnn import Seq2SeqConfig

    n = Seq2SeqConfig().hidden_size if hidden_size is None else hidden_size
    if not 2 <= tokens <= 5:
        raise ValueError(f"tokens must be between 2 and 5, got {tokens}")
    c = _Canvas(560, 370)
    step, bw, bh = 60, 40, 28
    enc_x = [20 + i * step for i in range(tokens)]
    dec_x = [300 + i * step for i in range(tokens)]

    def panel(top: float, attend: bool) -> None:
        y = top + 78  # the states' row
        c.text(
            10,
            top + 16,
            "With attention" if attend else "Without attention",
            anchor="start",
            bold=True,
        )
        c.text(20 + (tokens * step - 20) / 2, y + bh + 50, "encoder", italic=True)
        c.text(300 + (tokens * step - 20) / 2, y + bh + 50, "decoder", italic=True)
        for row, (xs, letter, tint) in enumerate(((enc_x, "h", _BLUE), (dec_x, "s", _ORANGE))):
            for i, x in enumerate(xs):
                c.box(x, y, bw, bh, tint)
                c.text(x + bw / 2, y + 19, f"{letter}{_sub(i + 1)}")
                if row == 0:  # the encoder reads x_i from below
                    c.text(x + bw / 2, y + bh + 28, f"x{_sub(i + 1)}")
                    c.line([(x + bw / 2, y + bh + 14), (x + bw / 2, y + bh + 2)])
                else:  # the decoder writes y_i below
                    c.line([(x + bw / 2, y + bh + 1), (x + bw / 2, y + bh + 13)])
                    c.text(x + bw / 2, y + bh + 28, f"y{_sub(i + 1)}")
                if i:
                    c.line([(x - step + bw, y + bh / 2), (x - 1, y + bh / 2)])
        last = enc_x[-1] + bw
        c.line([(last, y + bh / 2), (dec_x[0] - 1, y + bh / 2)])
        if not attend:
            c.text(
                (last + dec_x[0]) / 2,
                y - 18,
                f"h{_sub(tokens)}: all of x₁…x{_sub(tokens)}",
                size=_SMALL,
            )
            c.text((last + dec_x[0]) / 2, y - 4, f"in {n} numbers", size=_SMALL, bold=True)
            return
        # Attention: the decoder state s_{i-1} scores every encoder state, and
        # the weighted blend c_i enters step i.
        i = tokens - 1
        cx, cy = 275.0, top + 36
        c.circle(cx, cy, 14, _GREEN)
        c.text(cx, cy + 5, "Σ")
        c.text(cx - 18, cy - 12, "α·h", size=_SMALL, anchor="end")
        for x in enc_x:
            c.line([(x + bw / 2, y - 1), (cx - 10, cy + 10)])
        qx = dec_x[i - 1] + bw / 2
        c.line([(qx, y - 1), (qx, cy), (cx + 15, cy)], dashed=True)
        c.text(qx, cy - 8, f"query s{_sub(i)}", size=_SMALL)
        dx = dec_x[i] + bw / 2
        c.line([(cx + 8, cy - 12), (cx + 8, top + 14), (dx, top + 14), (dx, y - 1)])
        c.text(dx + 6, top + 30, f"c{_sub(i + 1)}", size=_SMALL, anchor="start")

    panel(0, False)
    panel(185, True)
    title = "An RNN encoder-decoder, without and with attention"
    description = (
        f"Top: the encoder reads x1 to x{tokens} into states h1 to h{tokens}; only the last "
        f"state, h{tokens}, {n} numbers, is passed to the decoder, whose states s1 to s{tokens} "
        f"write y1 to y{tokens}. Everything about the source must pass through those {n} numbers. "
        f"Bottom: the same networks, but every encoder state h1 to h{tokens} is kept. Before "
        f"writing y{tokens}, the decoder's previous state s{tokens - 1} scores every encoder "
        f"state; the softmax weights blend them into a context vector c{tokens}, which goes "
        f"into decoder step {tokens}. Every source position is one step away."
    )
    return c.render("encoder-decoder", title, description)


# -- Chapter 4 -------------------------------------------------------------------


def _grid(
    c: _Canvas, x: float, y: float, rows: int, cols: int, tint: str, cell: float = 10
) -> None:
    """A rows x cols matrix of small cells."""
    c.box(x, y, cols * cell, rows * cell, tint, radius=0)
    for j in range(1, cols):
        c.parts.append(
            f'<line x1="{x + j * cell:.1f}" y1="{y:.1f}" x2="{x + j * cell:.1f}" '
            f'y2="{y + rows * cell:.1f}" stroke="currentColor" stroke-opacity="0.35"/>'
        )
    for i in range(1, rows):
        c.parts.append(
            f'<line x1="{x:.1f}" y1="{y + i * cell:.1f}" x2="{x + cols * cell:.1f}" '
            f'y2="{y + i * cell:.1f}" stroke="currentColor" stroke-opacity="0.35"/>'
        )


def _shape(t: Tensor) -> str:
    return "(" + ", ".join(str(n) for n in t.shape) + ")"


@dataclass(frozen=True)
class QKVTensors:
    """The tensors :func:`qkv_flow` draws, computed by :class:`attention.SelfAttentionV1`."""

    inputs: Tensor  # (T, d_in)
    w_query: Tensor  # (d_in, d_out)
    queries: Tensor  # (T, d_out)
    keys: Tensor  # (T, d_out)
    values: Tensor  # (T, d_out)
    scores: Tensor  # (T, T)
    weights: Tensor  # (T, T)
    context: Tensor  # (T, d_out)


def qkv_tensors(*, d_out: int = 2, seed: int = 123) -> QKVTensors:
    """Every intermediate of chapter 4's layer on the six toy tokens.

    Args:
        d_out: Width of queries, keys and values. Default: 2.
        seed: Seed of the layer's weights. Default: 123, as in the book.

    Returns:
        A :class:`QKVTensors`.
    """
    from attention.self_attention import SelfAttentionV1
    from attention.toy import toy_inputs

    x = toy_inputs()  # (T, d_in)
    torch.manual_seed(seed)
    layer = SelfAttentionV1(d_in=x.shape[1], d_out=d_out)
    with torch.no_grad():
        q, k, v = x @ layer.W_query, x @ layer.W_key, x @ layer.W_value  # (T, d_out)
        scores = q @ k.T  # (T, d_out) @ (d_out, T) -> (T, T)
        weights = torch.softmax(scores / k.shape[-1] ** 0.5, dim=-1)  # (T, T)
        context = weights @ v  # (T, T) @ (T, d_out) -> (T, d_out)
        return QKVTensors(x, layer.W_query.detach(), q, k, v, scores, weights, context)


def qkv_flow(*, d_out: int = 2, seed: int = 123) -> Diagram:
    """From embeddings to context vectors: queries, keys, values, scores, weights.

    Args:
        d_out: Width of queries, keys and values. Default: 2.
        seed: Seed of the layer's weights. Default: 123.

    Returns:
        A :class:`Diagram` whose shapes are those of :func:`qkv_tensors`.

    Example:
        >>> "(6, 3)" in qkv_flow().description
        True
    """
    t = qkv_tensors(d_out=d_out, seed=seed)
    n, d_in = t.inputs.shape
    c = _Canvas(560, 270)
    cell = 10
    mid = 135.0  # vertical centre of the flow
    # Inputs X.
    xh = n * cell
    _grid(c, 14, mid - xh / 2, n, d_in, _BLUE)
    c.text(14 + d_in * cell / 2, mid - xh / 2 - 8, "X", bold=True)
    c.text(14 + d_in * cell / 2, mid + xh / 2 + 16, _shape(t.inputs), size=_SMALL)
    # Q, K, V, one above the other.
    rows = [
        ("Q", "W_query", t.queries, 42.0),
        ("K", "W_key", t.keys, mid),
        ("V", "W_value", t.values, 228.0),
    ]
    qx = 150.0
    for letter, weight, tensor, cy in rows:
        c.line([(14 + d_in * cell + 4, mid), (qx - 6, cy)])
        c.text(
            88, cy - 5 if cy < mid else cy + (14 if cy > mid else -5), f"× {weight}", size=_SMALL
        )
        _grid(c, qx, cy - xh / 2, n, d_out, _ORANGE if letter != "V" else _GREEN)
        c.text(qx + d_out * cell + 6, cy - 4, letter, anchor="start", bold=True)
        c.text(qx + d_out * cell + 6, cy + 11, _shape(tensor), size=_SMALL, anchor="start")
    c.text(88, 258, f"each {_shape(t.w_query)}", size=_SMALL)
    # Scores = Q K^T.
    sx = 262.0
    c.line([(qx + d_out * cell + 44, 42), (sx - 4, mid - 20)])
    c.line([(qx + d_out * cell + 44, mid), (sx - 4, mid)])
    _grid(c, sx, mid - xh / 2, n, n, _ORANGE)
    c.text(sx + n * cell / 2, mid - xh / 2 - 8, "Q Kᵀ", bold=True)
    c.text(sx + n * cell / 2, mid + xh / 2 + 16, _shape(t.scores), size=_SMALL)
    c.text(sx + n * cell / 2, mid + xh / 2 + 30, "scores", size=_SMALL, italic=True)
    # Weights = softmax(scores / sqrt(d_k)).
    wx = sx + n * cell + 82
    c.line([(sx + n * cell + 4, mid), (wx - 4, mid)])
    c.text((sx + n * cell + wx) / 2, mid - 22, "softmax", size=_SMALL)
    c.text((sx + n * cell + wx) / 2, mid - 8, f"(÷ √{t.keys.shape[-1]})", size=_SMALL)
    _grid(c, wx, mid - xh / 2, n, n, _PURPLE)
    c.text(wx + n * cell / 2, mid - xh / 2 - 8, "α", bold=True)
    c.text(wx + n * cell / 2, mid + xh / 2 + 16, _shape(t.weights), size=_SMALL)
    c.text(wx + n * cell / 2, mid + xh / 2 + 30, "weights", size=_SMALL, italic=True)
    # Context = α V.
    zx = wx + n * cell + 52
    c.line([(wx + n * cell + 4, mid), (zx - 4, mid)])
    c.text((wx + n * cell + zx) / 2, mid - 8, "· V", size=_SMALL)
    c.line(
        [
            (qx + d_out * cell + 44, 228),
            (zx + d_out * cell / 2, 228),
            (zx + d_out * cell / 2, mid + xh / 2 + 4),
        ]
    )
    _grid(c, zx, mid - xh / 2, n, d_out, _GREEN)
    c.text(zx + d_out * cell / 2, mid - xh / 2 - 22, "Z", bold=True)
    c.text(zx + d_out * cell / 2, mid - xh / 2 - 8, _shape(t.context), size=_SMALL)
    title = "From embeddings to context vectors through queries, keys and values"
    description = (
        f"The {n} token embeddings X, shape {_shape(t.inputs)}, are multiplied by three "
        f"learned matrices W_query, W_key and W_value, each {_shape(t.w_query)}, giving queries Q, "
        f"keys K and values V, each {_shape(t.queries)}. Q times K transposed gives the scores, "
        f"{_shape(t.scores)}: one row per query, one column per key. Each row is divided by the "
        f"square root of {t.keys.shape[-1]} and put through a softmax, giving the attention "
        f"weights α, {_shape(t.weights)}, whose rows sum to one. α times V gives the context "
        f"vectors Z, {_shape(t.context)}: one blend of the values per token."
    )
    return c.render("qkv-flow", title, description)


# -- Chapter 5 -------------------------------------------------------------------


@dataclass(frozen=True)
class MaskTensors:
    """What :func:`mask_then_softmax` draws."""

    scores: Tensor  # (T, T), scaled
    masked: Tensor  # (T, T), -inf above the diagonal
    weights: Tensor  # (T, T), masked_softmax of the scores
    unmasked: Tensor  # (T, T), plain softmax of the scores


def mask_tensors(*, seed: int = 789) -> MaskTensors:
    """Chapter 5's scaled scores of the toy tokens, masked and normalised.

    Args:
        seed: Seed of the :class:`attention.SelfAttentionV2` layer. Default: 789.

    Returns:
        A :class:`MaskTensors`.
    """
    from attention.self_attention import SelfAttentionV2
    from attention.toy import toy_inputs

    x = toy_inputs()
    torch.manual_seed(seed)
    layer = SelfAttentionV2(d_in=x.shape[1], d_out=2)
    with torch.no_grad():
        q, k = layer.W_query(x), layer.W_key(x)  # (T, d_out)
        scores = q @ k.T / k.shape[-1] ** 0.5  # (T, T)
    blocked = causal_mask(x.shape[0])  # (T, T), True = blocked
    return MaskTensors(
        scores=scores,
        masked=scores.masked_fill(blocked, -torch.inf),
        weights=masked_softmax(scores, blocked),
        unmasked=torch.softmax(scores, dim=-1),
    )


def _number(v: float) -> str:
    if v == -math.inf:
        return "−∞"
    return f"{v:.2f}".replace("-", "−")


def mask_then_softmax(*, seed: int = 789) -> Diagram:
    """Scores with the future set to ``-inf``, and the softmax that turns it into 0.

    Args:
        seed: Seed of the layer whose scores are drawn. Default: 789.

    Returns:
        A :class:`Diagram` showing :func:`mask_tensors`' numbers to two decimals.

    Example:
        >>> "−∞" in mask_then_softmax().svg
        True
    """
    from attention.toy import TOKENS

    t = mask_tensors(seed=seed)
    n = t.scores.shape[0]
    cw, ch, left, top = 38.0, 22.0, 58.0, 52.0
    gap = 44.0
    c = _Canvas(left + 2 * n * cw + gap + 52, top + n * ch + 62)
    grids = (("scores ÷ √d_k, masked", t.masked), ("weights", t.weights))
    for g, (name, matrix) in enumerate(grids):
        x0 = left + g * (n * cw + gap)
        c.text(x0 + n * cw / 2, 18, name, bold=True)
        for i in range(n):
            for j in range(n):
                blocked = j > i
                tint = _RED if blocked else (_BLUE if g == 0 else _PURPLE)
                c.box(
                    x0 + j * cw,
                    top + i * ch,
                    cw,
                    ch,
                    tint,
                    opacity=0.12 if blocked else 0.25,
                    radius=0,
                )
                c.text(
                    x0 + j * cw + cw / 2,
                    top + i * ch + 15,
                    _number(float(matrix[i, j])),
                    size=_SMALL,
                )
    for j in range(n):  # key labels, over both grids
        for g in range(2):
            c.text(left + g * (n * cw + gap) + j * cw + cw / 2, top - 8, TOKENS[j][:5], size=9)
    for i in range(n):
        c.text(left - 6, top + i * ch + 15, TOKENS[i], size=_SMALL, anchor="end")
        c.text(
            left + 2 * n * cw + gap + 8,
            top + i * ch + 15,
            f"= {float(t.weights[i].sum()):.2f}",
            size=_SMALL,
            anchor="start",
        )
    mid_x = left + n * cw + gap / 2
    c.line([(mid_x - 16, top + n * ch / 2), (mid_x + 16, top + n * ch / 2)])
    c.text(mid_x, top + n * ch / 2 - 8, "softmax", size=9)
    c.text(left + 2 * n * cw + gap + 8, top - 8, "row sum", size=9, anchor="start")
    row = 2
    before = float(t.unmasked[row, : row + 1].sum())
    c.text(
        left,
        top + n * ch + 24,
        "e^−∞ = 0: the blocked keys get no weight, and each row's visible weights",
        size=_SMALL,
        anchor="start",
    )
    c.text(
        left,
        top + n * ch + 42,
        f"share all of it. Row “{TOKENS[row]}”: {before:.2f} without the mask, 1.00 with it.",
        size=_SMALL,
        anchor="start",
    )
    title = "Masking the scores with minus infinity, then the softmax of each row"
    last = n - 1
    description = (
        f"Left: the {n} by {n} attention scores of the toy sentence, divided by the square root "
        f"of d_k, each query a row and each key a column, with every score above the "
        f"diagonal (a key later than its query) "
        f"replaced by minus infinity. Right: the softmax of each row. Every minus infinity "
        f"became exactly 0, since e to the minus infinity is 0, so the first row, "
        f"{TOKENS[0]}, puts weight {float(t.weights[0, 0]):.2f} on itself, and the last row, "
        f"{TOKENS[last]}, spreads its weight over all {n} tokens. Each row still sums to 1: "
        f"the visible keys of row {TOKENS[row]} held {before:.2f} of the weight without the "
        f"mask, and share all of it with the mask."
    )
    return c.render("mask-then-softmax", title, description)


# -- Chapter 8 -------------------------------------------------------------------


@dataclass(frozen=True)
class HeadSplitTensors:
    """The real tensors :func:`head_split` draws (one sequence, B = 1)."""

    x: Tensor  # (B, T, C), contiguous
    split: Tensor  # (B, T, H, D), a view of x
    heads: Tensor  # (B, H, T, D), a transposed view of x
    context: Tensor  # (B, H, T, D), fresh memory, head by head
    swapped: Tensor  # (B, T, H, D), a transposed view of context
    packed: Tensor  # (B, T, H, D), a contiguous copy of swapped
    merged: Tensor  # (B, T, C), a view of packed
    view_fails: bool  # swapped.view(B, T, C) raises


def head_split_tensors(
    *, tokens: int = 3, num_heads: int = 2, head_dim: int = 2
) -> HeadSplitTensors:
    """Split a (1, T, C) tensor into heads and merge it back, as the layer does.

    Args:
        tokens: The number of tokens T. Default: 3.
        num_heads: The number of heads H. Default: 2.
        head_dim: The width D of a head. Default: 2.

    Returns:
        A :class:`HeadSplitTensors`.
    """
    b, t, h, d = 1, tokens, num_heads, head_dim
    x = torch.arange(b * t * h * d, dtype=torch.float32).view(b, t, h * d)  # (B, T, C)
    split = x.view(b, t, h, d)  # (B, T, H, D)
    heads = split.transpose(1, 2)  # (B, H, T, D)
    context = heads.contiguous()  # (B, H, T, D): new memory, as a matmul's output is
    swapped = context.transpose(1, 2)  # (B, T, H, D)
    try:
        swapped.view(b, t, h * d)
        view_fails = False
    except RuntimeError:
        view_fails = True
    packed = swapped.contiguous()  # (B, T, H, D)
    merged = packed.view(b, t, h * d)  # (B, T, C)
    return HeadSplitTensors(x, split, heads, context, swapped, packed, merged, view_fails)


def _offsets(t: Tensor, index: tuple[int, ...]) -> int:
    """Where element ``index`` of ``t`` lies in its storage."""
    return int(t.storage_offset()) + sum(i * s for i, s in zip(index, t.stride(), strict=True))


def head_split(*, tokens: int = 3, num_heads: int = 2, head_dim: int = 2) -> Diagram:
    """The head split and merge of multi-head attention, and the memory under them.

    Args:
        tokens: The number of tokens T. Default: 3.
        num_heads: The number of heads H. Default: 2.
        head_dim: The width D of a head. Default: 2.

    Returns:
        A :class:`Diagram` whose shapes and strides are those of
        :func:`head_split_tensors`.

    Example:
        >>> "(1, 2, 3, 2)" in head_split().description
        True
    """
    s = head_split_tensors(tokens=tokens, num_heads=num_heads, head_dim=head_dim)
    t, h, d = tokens, num_heads, head_dim
    size = t * h * d
    cw = min(40.0, 480.0 / size)
    c = _Canvas(560, 470)
    head_tints = [PALETTE[i % len(PALETTE)] for i in range(h)]

    def strip(y: float, tensor: Tensor, caption: str) -> None:
        """The storage under ``tensor`` (B, T, H, D), one cell per number, labelled t,h."""
        where: dict[int, tuple[int, int]] = {}
        for ti in range(t):
            for hi in range(h):
                for di in range(d):
                    where[_offsets(tensor, (0, ti, hi, di))] = (ti, hi)
        c.text(20, y - 6, caption, size=_SMALL, anchor="start", italic=True)
        for pos in range(size):
            ti, hi = where[pos]
            c.box(20 + pos * cw, y, cw, 24, head_tints[hi], opacity=0.3, radius=0)
            c.text(20 + pos * cw + cw / 2, y + 16, f"t{ti}", size=_SMALL)

    def shape_line(y: float, op: str, tensor: Tensor, note: str = "") -> None:
        c.text(20, y, op, anchor="start", bold=True)
        c.text(150, y, f"{_shape(tensor)}", anchor="start")
        c.text(270, y, f"strides {tuple(tensor.stride())}", anchor="start", size=_SMALL)
        if note:
            c.text(400, y, note, anchor="start", size=_SMALL, italic=True)

    c.text(
        20,
        18,
        f"Split: T = {t} tokens, C = {h * d} features, H = {h} heads of D = {d}",
        anchor="start",
        bold=True,
    )
    shape_line(44, "x  (B, T, C)", s.x)
    shape_line(64, ".view", s.split, "same memory")
    shape_line(84, ".transpose(1, 2)", s.heads, "same memory")
    strip(116, s.split, "memory of x: each token's heads side by side (colour = head)")
    first = [_offsets(s.heads, (0, 0, ti, di)) for ti in range(t) for di in range(d)]
    c.text(
        20,
        162,
        f"head 0 of (B, H, T, D) reads places {', '.join(map(str, first))}: steps, not a copy",
        size=_SMALL,
        anchor="start",
    )

    y0 = 200
    c.text(
        20, y0, "Merge: attention's output is new memory, head by head", anchor="start", bold=True
    )
    shape_line(y0 + 26, "context", s.context)
    strip(y0 + 56, s.swapped, "memory of context (B, H, T, D)")
    shape_line(y0 + 106, ".transpose(1, 2)", s.swapped, "same memory")
    token0 = sorted(_offsets(s.swapped, (0, 0, hi, di)) for hi in range(h) for di in range(d))
    verdict = "view(B, T, C) fails" if s.view_fails else "view(B, T, C) works"
    c.text(
        20,
        y0 + 126,
        f"token 0's {h * d} features sit at places {', '.join(map(str, token0))}: "
        f"no single stride, so {verdict}",
        size=_SMALL,
        anchor="start",
    )
    shape_line(y0 + 152, ".contiguous()", s.packed, "a copy")
    strip(y0 + 182, s.packed, "memory of the copy: token by token again")
    shape_line(y0 + 236, ".view", s.merged, "(B, T, C), same memory")
    title = (
        "Splitting a (B, T, C) tensor into heads and merging it back, with the memory underneath"
    )
    description = (
        f"One sequence of {t} tokens with C = {h * d} features, split into H = {h} heads of "
        f"D = {d}. view turns shape {_shape(s.x)} with strides {tuple(s.x.stride())} into "
        f"{_shape(s.split)} with strides {tuple(s.split.stride())}, and transpose(1, 2) into "
        f"{_shape(s.heads)} with strides {tuple(s.heads.stride())}; both only change the "
        f"strides, and the memory stays token by token. Attention's output, the context "
        f"{_shape(s.context)}, is new memory laid out head by head. transpose(1, 2) makes it "
        f"{_shape(s.swapped)} with strides {tuple(s.swapped.stride())}: token 0's features "
        f"now sit at memory places {', '.join(map(str, token0))}, which no single stride "
        f"describes, so {verdict}. contiguous() copies it into token-by-token order, strides "
        f"{tuple(s.packed.stride())}, after which view gives {_shape(s.merged)}."
    )
    return c.render("head-split", title, description)


# -- Chapter 11 ------------------------------------------------------------------


def prenorm_block(config: object | None = None) -> Diagram:
    """The pre-norm transformer block, with both shortcut connections.

    Args:
        config: A :class:`attention.gpt.GPTConfig`. Default: GPT-2 small's.

    Returns:
        A :class:`Diagram` whose layer names and widths are read from a
        :class:`attention.gpt.TransformerBlock` built with ``config``.

    Example:
        >>> "768" in prenorm_block().description
        True
    """
    from attention.gpt import GPTConfig, TransformerBlock

    cfg = GPTConfig() if config is None else config
    if not isinstance(cfg, GPTConfig):
        raise TypeError(f"config must be a GPTConfig, got {type(cfg).__name__}")
    block = TransformerBlock(cfg)
    width = cfg.emb_dim
    hidden = max(m.out_features for m in block.ff.modules() if isinstance(m, torch.nn.Linear))
    heads = block.att.num_heads
    drop = f"Dropout(p={cfg.drop_rate:g})"
    steps = [
        ("norm1", f"{type(block.norm1).__name__}({width})", _BLUE),
        ("att", f"{type(block.att).__name__}, {heads} heads", _ORANGE),
        ("drop_shortcut", drop, None),
        ("norm2", f"{type(block.norm2).__name__}({width})", _BLUE),
        ("ff", f"{type(block.ff).__name__}: {width} → {hidden} → {width}", _GREEN),
        ("drop_shortcut", drop, None),
    ]
    c = _Canvas(400, 560)
    cx, bw, bh = 170.0, 260.0, 32.0
    y = 14.0
    c.text(cx, y + 12, f"x  (B, T, {width})", bold=True)
    y += 22
    for half in range(2):
        fork = y + 10
        c.line([(cx, y), (cx, y + 24)])
        c.circle(cx, fork, 3, None)
        y += 24
        for attr, label, tint in steps[3 * half : 3 * half + 3]:
            c.box(cx - bw / 2, y, bw, bh, tint, dashed=tint is None)
            c.text(cx, y + 15, label)
            c.text(cx, y + 28, f"block.{attr}", size=9, italic=True)
            c.line([(cx, y + bh), (cx, y + bh + 16)])
            y += bh + 16
        plus = y + 12
        c.circle(cx, plus, 11)
        c.text(cx, plus + 5, "+", bold=True)
        side = cx + bw / 2 + 26
        c.line([(cx, fork), (side, fork), (side, plus), (cx + 12, plus)])
        c.text(side + 6, (fork + plus) / 2, "shortcut", size=_SMALL, anchor="start")
        y = plus + 12
    c.line([(cx, y - 1), (cx, y + 20)])
    c.text(cx, y + 36, f"out  (B, T, {width})", bold=True)
    c.height = y + 46
    title = "The pre-norm transformer block, with its two shortcut connections"
    description = (
        f"Top to bottom: the input x, shape (B, T, {width}), is copied aside, normalised by "
        f"{steps[0][1]}, mixed across tokens by {steps[1][1]}, passed through {drop}, and "
        f"added back to the copy: the first shortcut. The sum is copied aside again, "
        f"normalised by {steps[3][1]}, transformed token by token by a {steps[4][1]} "
        f"feed-forward network, passed through {drop}, and added to the second copy: the second "
        f"shortcut. The output has the input's shape, (B, T, {width}). The normalisation sits "
        f"inside each branch, before attention and before the feed-forward network, so each "
        f"shortcut carries x unchanged."
    )
    return c.render("prenorm-block", title, description)


# -- Chapter 13 ------------------------------------------------------------------


@dataclass(frozen=True)
class TileStep:
    """One key tile of the walk: its keys, and the row's running values after it."""

    keys: tuple[int, int]  # key positions j0..j1 (j1 excluded)
    tile_max: float  # the largest visible score of the row in this tile
    running_max: float  # m after the tile
    running_sum: float  # ℓ after the tile


@dataclass(frozen=True)
class TilingWalk:
    """What :func:`flash_tiling` draws."""

    tokens: int
    block: int
    query_block: tuple[int, int]  # the query rows walked
    row: int  # the query row whose running values are listed
    steps: tuple[TileStep, ...]
    logsumexp: float  # of the row's visible, scaled scores, computed in one go


def tiling_walk(
    *, tokens: int = 12, block: int = 4, seed: int = 0, head_dim: int = 4
) -> TilingWalk:
    """The causal tile walk of :func:`attention.flash.flash_attention` for the last query block.

    The key tiles are the ones ``flash_attention`` visits (its ``_key_blocks``);
    the running maximum ``m`` and sum ``ℓ`` are those of its online softmax,
    in base e, for the last query row of seeded random queries and keys.

    Args:
        tokens: The number of tokens T. Default: 12.
        block: Queries and keys per tile. Default: 4.
        seed: Seed of the random queries and keys. Default: 0.
        head_dim: The width D of a head. Default: 4.

    Returns:
        A :class:`TilingWalk`.
    """
    from attention.flash import _key_blocks

    g = torch.Generator().manual_seed(seed)
    q = torch.randn(tokens, head_dim, generator=g)
    k = torch.randn(tokens, head_dim, generator=g)
    i0 = (tokens - 1) // block * block
    i1 = tokens
    row = tokens - 1
    scores = (q[row] @ k.T) / math.sqrt(head_dim)  # (T,)
    m, ell, steps = -math.inf, 0.0, []
    for j0, j1 in _key_blocks(i0, i1, tokens, 0, True, block):
        visible = scores[j0 : min(j1, row + 1)]
        tile_max = float(visible.max())
        new_m = max(m, tile_max)
        ell = ell * math.exp(m - new_m) + float(torch.exp(visible - new_m).sum())
        m = new_m
        steps.append(TileStep((j0, j1), tile_max, m, ell))
    lse = float(torch.logsumexp(scores[: row + 1], dim=0))
    return TilingWalk(tokens, block, (i0, i1), row, tuple(steps), lse)


def flash_tiling(*, tokens: int = 12, block: int = 4, seed: int = 0) -> Diagram:
    """Tiles of queries against tiles of keys, and the running maximum and sum.

    Args:
        tokens: The number of tokens T. Default: 12.
        block: Queries and keys per tile. Default: 4.
        seed: Seed of the queries and keys. Default: 0.

    Returns:
        A :class:`Diagram` of :func:`tiling_walk`.

    Example:
        >>> "skipped" in flash_tiling().description
        True
    """
    w = tiling_walk(tokens=tokens, block=block, seed=seed)
    n, b = w.tokens, w.block
    cell = min(16.0, 192.0 / n)
    gx, gy = 40.0, 50.0
    c = _Canvas(560, gy + n * cell + 70)
    c.text(gx + n * cell / 2, 18, "scores (T, T): queries ↓, keys →", size=_SMALL)
    n_tiles = math.ceil(n / b)
    walked = {s.keys[0] // b for s in w.steps}
    for ti in range(n_tiles):
        for tj in range(n_tiles):
            x, y = gx + tj * b * cell, gy + ti * b * cell
            wd = (min(n, (tj + 1) * b) - tj * b) * cell
            ht = (min(n, (ti + 1) * b) - ti * b) * cell
            if tj > ti:
                c.box(x, y, wd, ht, None, dashed=True, radius=0)
                continue
            current = ti * b == w.query_block[0] and tj in walked
            c.box(
                x,
                y,
                wd,
                ht,
                _ORANGE if current else _BLUE,
                opacity=0.35 if current else 0.12,
                radius=0,
            )
            if tj == ti:  # the diagonal tile: masked inside
                c.parts.append(
                    f'<polyline points="{x:.1f},{y:.1f} {x + wd:.1f},{y + ht:.1f}" '
                    'stroke="currentColor" stroke-opacity="0.5" fill="none"/>'
                )
            if current:
                c.text(x + wd / 2, y + ht / 2 + 5, str(tj + 1), bold=True)
    c.text(gx - 6, gy + (w.row + 0.8) * cell, f"q{w.row}", size=9, anchor="end")
    c.text(
        gx + n * cell / 2,
        gy + n * cell + 18,
        "dashed: skipped (all keys in the future)",
        size=_SMALL,
    )
    c.text(gx + n * cell / 2, gy + n * cell + 34, "diagonal tiles: masked inside", size=_SMALL)
    # The table of running values for one row.
    tx = gx + n * cell + 40
    cols = [tx, tx + 62, tx + 132, tx + 200, tx + 262]
    heads = ["tile", "keys", "tile max", "m", "ℓ"]
    c.text(tx, 18, f"query row {w.row}, tile by tile", size=_SMALL, anchor="start", bold=True)
    for x, head in zip(cols, heads, strict=True):
        c.text(x, gy - 6, head, size=_SMALL, anchor="start", bold=True)
    for i, st in enumerate(w.steps):
        y = gy + 16 + i * 22
        last_key = min(st.keys[1], w.row + 1) - 1
        cells = [
            str(i + 1),
            f"{st.keys[0]}–{last_key}",
            _number(st.tile_max),
            _number(st.running_max),
            _number(st.running_sum),
        ]
        for x, text in zip(cols, cells, strict=True):
            c.text(x, y, text, size=_SMALL, anchor="start")
    y = gy + 16 + len(w.steps) * 22 + 10
    last = w.steps[-1]
    c.text(tx, y, "m' = max(m, tile max)", size=_SMALL, anchor="start")
    c.text(tx, y + 18, "ℓ' = e^(m − m') ℓ + Σ e^(s − m')", size=_SMALL, anchor="start")
    c.text(
        tx,
        y + 40,
        f"m + ln ℓ = {last.running_max + math.log(last.running_sum):.3f}",
        size=_SMALL,
        anchor="start",
    )
    c.text(
        tx,
        y + 58,
        f"= log-sum-exp of the whole row, {w.logsumexp:.3f}",
        size=_SMALL,
        anchor="start",
    )
    tiles = len(w.steps)
    skipped = n_tiles - tiles
    title = "Flash attention's tile walk, with the running maximum and sum of one query row"
    description = (
        f"A {n} by {n} grid of causal attention scores cut into tiles of {b} queries by {b} "
        f"keys. For the last block of queries, rows {w.query_block[0]} to {w.query_block[1] - 1}, "
        f"the loop visits {tiles} key tiles in order, numbered 1 to {tiles}; tiles whose keys "
        f"all lie after the queries are skipped, {skipped} in this block row, and the tile on "
        f"the diagonal is masked inside. A table follows query row {w.row} through the walk: "
        + "; ".join(
            f"after tile {i + 1} (keys {st.keys[0]} to {min(st.keys[1], w.row + 1) - 1}) the "
            f"running maximum m is {st.running_max:.2f} and the running sum l is "
            f"{st.running_sum:.2f}"
            for i, st in enumerate(w.steps)
        )
        + f". At the end m plus the log of l is "
        f"{last.running_max + math.log(last.running_sum):.3f}, "
        f"the log-sum-exp of the whole row computed at once, {w.logsumexp:.3f}."
    )
    return c.render("flash-tiling", title, description)


# -- Chapter 14 ------------------------------------------------------------------

#: The small MLA layer chapter 14 draws and runs: 8 heads, a query latent, and a
#: cache of 16 + 4 numbers a token against multi-head attention's 2 x 8 x 8 = 128.
LATENT_EXAMPLE = LatentConfig(
    d_model=64, n_heads=8, head_dim=8, rope_dim=4, kv_latent_dim=16, q_latent_dim=32
)


@dataclass(frozen=True)
class LatentWidths:
    """The widths :func:`latent_attention_flow` prints, read from a real layer."""

    model: int  # C, from W_dkv's input width
    heads: int  # H
    head: int  # D, from W_uk's output width / H
    rope: int  # d_R, from W_kr's output width
    kv_latent: int  # d_c, from W_dkv's output width
    q_latent: int | None  # d_c', from W_dq's output width; None = queries read x
    cached: int  # numbers a LatentCache gained for one token
    mha_cached: int  # 2 * H * D, multi-head attention's keys and values
    w_qk: tuple[int, int, int]  # W_uq_h W_uk_h^T for every head: (H, d_c' or C, d_c)
    w_vo: tuple[int, int, int]  # W_uv_h W_o_h for every head: (H, d_c, C)


def latent_widths(config: object | None = None) -> LatentWidths:
    """The widths of an :class:`attention.latent.MultiHeadLatentAttention` built with ``config``.

    The layer is built on PyTorch's ``meta`` device (shapes without numbers,
    so DeepSeek-V2's sizes cost no memory) and run on one token with a
    :class:`attention.latent.LatentCache`, whose contents give ``cached``.

    Args:
        config: A :class:`attention.latent.LatentConfig`. Default: :data:`LATENT_EXAMPLE`.

    Returns:
        A :class:`LatentWidths`.

    Example:
        >>> w = latent_widths()
        >>> w.cached, w.mha_cached
        (20, 128)
    """
    cfg = LATENT_EXAMPLE if config is None else config
    if not isinstance(cfg, LatentConfig):
        raise TypeError(f"config must be a LatentConfig, got {type(cfg).__name__}")
    with torch.device("meta"):
        layer = MultiHeadLatentAttention(cfg)
        cache = LatentCache()
        token = torch.zeros(1, 1, cfg.d_model)  # (B, T, C) = (1, 1, C)
        layer(token, cache=cache)
    h = cfg.n_heads
    d = layer.W_uk.weight.shape[0] // h  # W_uk: (H*D, d_c)
    w_qk, w_vo = layer.absorbed_weights()  # (H, d_c', d_c), (H, d_c, C): the folded matrices
    return LatentWidths(
        model=layer.W_dkv.weight.shape[1],
        heads=h,
        head=d,
        rope=layer.W_kr.weight.shape[0],
        kv_latent=layer.W_dkv.weight.shape[0],
        q_latent=None if layer.W_dq is None else layer.W_dq.weight.shape[0],
        cached=cache.nbytes // token.element_size(),  # one token's numbers (B = T = 1)
        mha_cached=cache_numbers_per_token(cfg)[1],
        w_qk=(w_qk.shape[0], w_qk.shape[1], w_qk.shape[2]),
        w_vo=(w_vo.shape[0], w_vo.shape[1], w_vo.shape[2]),
    )


def _node(
    c: _Canvas,
    cx: float,
    y: float,
    w: float,
    lines: Sequence[str],
    *,
    cached: bool = False,
    tint: str | None = None,
) -> None:
    """A box centred on ``cx``: a name, then smaller lines; cached boxes solid and green."""
    h = 8.0 + 14.0 * len(lines)
    c.box(cx - w / 2, y, w, h, _GREEN if cached else tint, dashed=not cached and tint is None)
    for i, words in enumerate(lines):
        c.text(cx, y + 15 + 14 * i, words, size=_FONT if i == 0 else _SMALL, bold=i == 0)


def latent_attention_flow(config: object | None = None) -> Diagram:
    """Multi-head latent attention: what is cached, what is rebuilt, and the absorbed form.

    ``c_kv = x W_dkv`` and ``k_rope = RoPE(x W_kr)`` are cached; every head's
    ``k_nope = c_kv W_uk`` and ``v = c_kv W_uv`` are rebuilt from them, or, in
    the absorbed form, ``W_uk`` is folded into the query and ``W_uv`` into the
    output projection.

    Args:
        config: A :class:`attention.latent.LatentConfig`. Default:
            :data:`LATENT_EXAMPLE`.

    Returns:
        A :class:`Diagram` whose widths are those of :func:`latent_widths`.

    Example:
        >>> "20 numbers per token" in latent_attention_flow().description
        True
    """
    w = latent_widths(config)
    h, d, r, dc = w.heads, w.head, w.rope, w.kv_latent
    q_in = w.q_latent if w.q_latent is not None else w.model
    mha = f"2 × H × D = 2 × {h} × {d} = {w.mha_cached}"
    c = _Canvas(560, 770)
    c.text(10, 16, "Readable form: every head's keys and values rebuilt", anchor="start", bold=True)
    _node(c, 280, 28, 190, ["x, one token", f"C = {w.model}"], tint=_BLUE)
    # Down-projections: the query latent, the cached rotary key and KV latent.
    y1 = 100.0
    if w.q_latent is None:
        _node(c, 95, y1, 130, ["no query latent", "W_uq, W_qr read x"])
    else:
        _node(c, 95, y1, 130, ["c_q", f"query latent, {w.q_latent}", "recomputed"])
    _node(c, 280, y1, 130, ["k_rope", f"rotary key, d_R = {r}", "cached"], cached=True)
    _node(c, 445, y1, 130, ["c_kv", f"KV latent, d_c = {dc}", "cached"], cached=True)
    c.line([(230, 64), (110, y1)])
    c.line([(280, 64), (280, y1)])
    c.line([(330, 64), (430, y1)])
    if w.q_latent is not None:
        c.text(158, 80, "× W_dq", size=_SMALL, anchor="end")
    c.text(286, 86, "× W_kr, RoPE", size=_SMALL, anchor="start")
    c.text(400, 76, "× W_dkv", size=_SMALL, anchor="start")
    # Up-projections, every head at once.
    y2, b1 = 200.0, y1 + 50
    _node(c, 52, y2, 96, ["q_nope", f"{h} heads × {d}"])
    _node(c, 154, y2, 96, ["q_rope", f"{h} heads × {r}"])
    _node(c, 395, y2, 96, ["k_nope", f"{h} heads × {d}"])
    _node(c, 500, y2, 96, ["v", f"{h} heads × {d}"])
    c.line([(75, b1), (52, y2)])
    c.line([(115, b1), (152, y2)])
    c.line([(425, b1), (395, y2)])
    c.line([(465, b1), (500, y2)])
    c.text(56, 178, "× W_uq", size=_SMALL, anchor="end")
    c.text(140, 178, "× W_qr, RoPE", size=_SMALL, anchor="start")
    c.text(404, 178, "× W_uk", size=_SMALL, anchor="end")
    c.text(488, 178, "× W_uv", size=_SMALL, anchor="start")
    # One head h: rotary part concatenated to the content part.
    y3, b2 = 290.0, y2 + 36
    _node(c, 100, y3, 170, ["query of head h", f"[q_nope,h | q_rope,h]: {d} + {r}"])
    _node(c, 330, y3, 170, ["key of head h", f"[k_nope,h | k_rope]: {d} + {r}"])
    _node(c, 500, y3, 90, ["value, head h", f"v_h: {d}"])
    c.line([(52, b2), (70, y3)])
    c.line([(152, b2), (130, y3)])
    c.line([(280, b1), (280, y3)])
    c.line([(395, b2), (380, y3)])
    c.line([(500, b2), (500, y3)])
    c.text(286, 276, "shared by all heads", size=_SMALL, anchor="start", italic=True)
    y4, b3 = 370.0, y3 + 36
    for x in (100, 330, 500):
        c.line([(x, b3), (x, y4)])
    _node(
        c,
        280,
        y4,
        520,
        [
            f"softmax(query · key / √{d + r}) over the cached tokens, times the values",
            f"each of the {h} heads: {d} numbers; together {h * d}, "
            f"mixed by out_proj to C = {w.model}",
        ],
        tint=_ORANGE,
    )
    # Legend.
    y5 = 432.0
    c.box(10, y5, 24, 14, _GREEN)
    c.text(
        40,
        y5 + 11,
        f"cached per token and layer: d_c + d_R = {dc} + {r} = {w.cached} numbers "
        f"({w.mha_cached / w.cached:.1f}× fewer)",
        size=_SMALL,
        anchor="start",
    )
    c.box(10, y5 + 22, 24, 14, None, dashed=True)
    c.text(
        40,
        y5 + 33,
        f"recomputed at every step; multi-head attention caches {mha}",
        size=_SMALL,
        anchor="start",
    )
    # The absorbed form.
    top = 486.0
    c.text(
        10,
        top + 16,
        "Absorbed form: W_uk folded into the query, W_uv into the output",
        anchor="start",
        bold=True,
    )
    ra, rb = top + 34, top + 150
    q_name = "c_q" if w.q_latent is not None else "x"
    _node(c, 50, ra, 80, [q_name, f"{q_in}"], tint=_BLUE)
    c.line([(90, ra + 18), (222, ra + 18)])
    c.text(156, ra + 10, "× W_uq,h W_uk,hᵀ", size=_SMALL)
    c.text(156, ra + 34, f"{w.w_qk[1]} × {w.w_qk[2]} per head", size=_SMALL)
    _node(c, 290, ra, 130, ["query of head h", f"in the latent's {dc}"])
    c.line([(355, ra + 18), (408, ra + 18)])
    c.text(382, ra + 10, "· c_kv", size=_SMALL)
    _node(c, 480, ra, 140, ["the cache", f"c_kv {dc}, k_rope {r}"], cached=True)
    c.text(
        290,
        ra + 66,
        f"+ q_rope,h · k_rope, ÷ √{d + r}, softmax: weights over the cached tokens",
        size=_SMALL,
    )
    c.line([(250, ra + 72), (250, rb)])
    c.text(244, ra + 100, "weights", size=_SMALL, anchor="end", italic=True)
    c.line([(480, ra + 36), (480, ra + 86), (330, ra + 86), (330, rb)])
    c.text(336, ra + 104, "cached c_kv", size=_SMALL, anchor="start", italic=True)
    _node(c, 290, rb, 150, ["Σ weight × c_kv", f"{dc} per head"])
    c.line([(365, rb + 18), (414, rb + 18)])
    _node(c, 480, rb, 130, [f"sum of {h} heads", f"out, C = {w.model}"], tint=_BLUE)
    c.text(390, rb + 54, "× W_uv,h W_o,h", size=_SMALL)
    c.text(390, rb + 68, f"{w.w_vo[1]} × {w.w_vo[2]} per head", size=_SMALL)
    c.text(
        10,
        rb + 96,
        "No per-head key or value is built: a step reads only the cached latents.",
        size=_SMALL,
        anchor="start",
        italic=True,
    )
    c.height = rb + 106
    times = w.mha_cached / w.cached
    queries = (
        f"by W_dq to the query latent c_q ({w.q_latent} numbers)"
        if w.q_latent is not None
        else "not at all for the queries, which read x itself"
    )
    title = "Multi-head latent attention: the cached latent, the rebuilt heads, the absorbed form"
    description = (
        f"Top, the readable form. A token's hidden vector x, C = {w.model} numbers, is "
        f"projected down {queries}; by W_dkv to the KV latent c_kv ({dc}); and by W_kr, then "
        f"RoPE, to the rotary key k_rope ({r}), which all {h} heads share. Only c_kv and "
        f"k_rope are cached: {dc} + {r} = {w.cached} numbers per token and layer, against "
        f"{mha} for multi-head attention's keys and values, {times:.1f} times fewer. At "
        f"every step the cached latents are projected up, by W_uk to every head's content "
        f"keys k_nope and by W_uv to the values, {h} heads of {d} each; the queries get "
        f"content parts q_nope, {h} heads of {d}, through W_uq, and rotary parts q_rope, "
        f"{h} heads of {r}, "
        f"through W_qr and RoPE. Each head's key is its k_nope part followed by the shared "
        f"k_rope, {d} + {r} numbers, scored against its query of {d} + {r}; the softmax of "
        f"the scores divided by the square root of {d + r} weights the head's values, and "
        f"the {h} heads' {h * d} numbers are mixed by out_proj back to {w.model}. Bottom, the "
        f"absorbed form, which gives the same output: W_uk is folded into the query, "
        f"W_uq,h W_uk,h transposed being one {w.w_qk[1]} by {w.w_qk[2]} matrix per head, so "
        f"each head's query lives in the latent's {dc} numbers and scores the cached c_kv "
        f"directly (plus its rotary score against k_rope). The weights average the cached "
        f"latents, {dc} numbers per head, and W_uv is folded into the output projection, "
        f"W_uv,h W_o,h being one {w.w_vo[1]} by {w.w_vo[2]} matrix per head; the heads' "
        f"results are summed. No per-head key or value is ever built."
    )
    return c.render("latent-attention-flow", title, description)


@dataclass(frozen=True)
class DeltaStep:
    """One token's update of the gated delta rule, and the additive update beside it.

    States are (D_v, D), values by keys, as in :mod:`attention.linear_attention`.
    ``additive`` is plain linear attention's write with the key itself
    (:class:`attention.linear_attention.LinearAttention` writes ``phi(k_t)``
    instead), applied to the same ``S_{t-1}``.
    """

    keys: Tensor  # (T, D), unit rows
    values: Tensor  # (T, D_v)
    betas: Tensor  # (T,), writing strengths
    alphas: Tensor  # (T,), decays
    before: Tensor  # S_{t-1}, (D_v, D), read from delta_rule_recurrent
    decayed: Tensor  # alpha_t S_{t-1}, (D_v, D)
    recalled: Tensor  # v_old = alpha_t S_{t-1} k_t, (D_v,)
    correction: Tensor  # beta_t (v_t - v_old) k_t^T, (D_v, D)
    after: Tensor  # S_t, (D_v, D), read from delta_rule_recurrent
    additive: Tensor  # S_{t-1} + v_t k_t^T, linear attention's write, (D_v, D)

    @property
    def key(self) -> Tensor:
        """k_t, the last token's key, (D,)."""
        return self.keys[-1]

    @property
    def value(self) -> Tensor:
        """v_t, the last token's value, (D_v,)."""
        return self.values[-1]

    @property
    def beta(self) -> float:
        """beta_t, the last token's writing strength."""
        return float(self.betas[-1])

    @property
    def alpha(self) -> float:
        """alpha_t, the last token's decay."""
        return float(self.alphas[-1])


def _delta_states(key: Tensor, value: Tensor, beta: Tensor, alpha: Tensor) -> Tensor:
    """Every state S_t of :func:`attention.linear_attention.delta_rule_recurrent`, (T, D_v, D).

    The function returns ``S_t q_t``; batch entry j asks with ``q_t = e_j`` at
    every t, so its outputs are column j of each state.
    """
    t, d = key.shape  # (T, D)
    q = torch.eye(d, dtype=key.dtype, device=key.device)[:, None, None, :].expand(d, 1, t, d)
    out = delta_rule_recurrent(
        q,  # (D, 1, T, D): D copies of the sequence, copy j reading with e_j
        key.expand(d, 1, t, d),  # (T, D) -> (D, 1, T, D)
        value.expand(d, 1, t, value.shape[-1]),  # (T, D_v) -> (D, 1, T, D_v)
        beta.expand(d, 1, t),  # (T,) -> (D, 1, T)
        alpha.expand(d, 1, t),  # (T,) -> (D, 1, T)
    )  # (D, 1, T, D_v): out[j, 0, t] = S_t e_j
    return out[:, 0].permute(1, 2, 0)  # (D, T, D_v) -> (T, D_v, D)


def delta_step(*, head_dim: int = 3, tokens: int = 3, seed: int = 4) -> DeltaStep:
    """The gated delta rule's update at the last of ``tokens`` seeded tokens.

    Keys are random unit vectors (as :class:`attention.linear_attention.GatedDeltaNet`
    normalises them), values standard normal, ``beta_t`` uniform in [0, 1) and
    ``alpha_t`` uniform in [0.5, 1). The states before and after come from
    :func:`attention.linear_attention.delta_rule_recurrent`; the parts between
    are its formula, ``S_t = alpha_t S_{t-1} + beta_t (v_t - alpha_t S_{t-1} k_t) k_t^T``.

    Args:
        head_dim: D = D_v, the width of keys and values. Default: 3.
        tokens: T, the tokens written; the last one is drawn. Default: 3.
        seed: Seed of the keys, values and gates. Default: 4.

    Returns:
        A :class:`DeltaStep`.

    Example:
        >>> s = delta_step()
        >>> torch.allclose(s.decayed + s.correction, s.after, atol=1e-6)
        True
    """
    d = _checks.positive_int("head_dim", head_dim)
    n = _checks.positive_int("tokens", tokens)
    _checks.non_negative_int("seed", seed)
    if not 2 <= d <= 4:
        raise ValueError(f"head_dim must be between 2 and 4 (a grid a page can show), got {d}")
    if not 2 <= n <= 8:
        raise ValueError(f"tokens must be between 2 and 8, got {n}")
    g = torch.Generator().manual_seed(seed)
    key = F.normalize(torch.randn(n, d, generator=g), dim=-1)  # (T, D), unit rows
    value = torch.randn(n, d, generator=g)  # (T, D_v)
    beta = torch.rand(n, generator=g)  # (T,), in [0, 1)
    alpha = 0.5 + 0.5 * torch.rand(n, generator=g)  # (T,), in [0.5, 1)
    states = _delta_states(key, value, beta, alpha)  # (T, D_v, D)
    k, v, b, a = key[-1], value[-1], float(beta[-1]), float(alpha[-1])  # (D,), (D_v,)
    before = states[-2]  # (D_v, D)
    decayed = a * before  # (D_v, D)
    recalled = decayed @ k  # (D_v, D) @ (D,) -> (D_v,)
    correction = b * torch.outer(v - recalled, k)  # (D_v,) x (D,) -> (D_v, D)
    additive = before + torch.outer(v, k)  # (D_v, D)
    return DeltaStep(
        key, value, beta, alpha, before, decayed, recalled, correction, states[-1], additive
    )


def _heat(
    c: _Canvas, x: float, y: float, m: Tensor, top: str, *, scale: float, cw: float = 38
) -> None:
    """Matrix ``m`` (rows, cols) as cells of rounded numbers, tinted by sign and size."""
    ch = 22.0
    rows, cols = m.shape
    c.text(x + cols * cw / 2, y - 7, top, size=_SMALL, bold=True)
    for i in range(rows):
        for j in range(cols):
            v = float(m[i, j])
            tint = _BLUE if v >= 0 else _ORANGE
            c.box(x + j * cw, y + i * ch, cw, ch, tint, opacity=MAX_TINT * abs(v) / scale, radius=0)
            c.text(x + j * cw + cw / 2, y + i * ch + 15, _number(v), size=_SMALL)


def delta_rule_update(*, head_dim: int = 3, tokens: int = 3, seed: int = 4) -> Diagram:
    """One step of the gated delta rule on real numbers, beside linear attention's write.

    ``S_t = alpha_t S_{t-1} (I - beta_t k_t k_t^T) + beta_t v_t k_t^T``, drawn
    as decay, read, correct: ``S_t = alpha_t S_{t-1} + beta_t (v_t - v_old) k_t^T``
    with ``v_old = alpha_t S_{t-1} k_t``, in the order
    :func:`attention.linear_attention.delta_rule_recurrent` computes it. Below
    it, plain linear attention's ``S_{t-1} + v_t k_t^T``, which only adds. The
    states before and after are the package's (see :func:`delta_step`).

    Args:
        head_dim: D = D_v. Default: 3.
        tokens: T, the tokens written; the last one is drawn. Default: 3.
        seed: Seed of the keys, values and gates. Default: 4.

    Returns:
        A :class:`Diagram` of :func:`delta_step`, every number to two decimals.

    Example:
        >>> "only adds" in delta_rule_update().description
        True
    """
    s = delta_step(head_dim=head_dim, tokens=tokens, seed=seed)
    d = s.key.shape[0]
    cw, ch = 38.0, 22.0
    side = d * cw
    grids = (s.before, s.decayed, s.correction, s.after, s.additive)
    scale = max(float(m.abs().max()) for m in grids)
    read_after, read_added = s.after @ s.key, s.additive @ s.key  # (D_v, D) @ (D,) -> (D_v,)
    miss_delta = float((read_after - s.value).norm())  # distance of the read from v
    miss_added = float((read_added - s.value).norm())
    t = tokens
    c = _Canvas(560, 100)
    c.text(
        10,
        16,
        f"Token {t}: k = ({', '.join(_number(float(x)) for x in s.key)}), "
        f"v = ({', '.join(_number(float(x)) for x in s.value)}), "
        f"β = {s.beta:.2f}, α = {s.alpha:.2f}",
        size=_SMALL,
        anchor="start",
    )
    c.text(
        10,
        36,
        f"S{_sub(t)} = α S{_sub(t - 1)} + β (v − v_old) kᵀ,  v_old = α S{_sub(t - 1)} k",
        anchor="start",
        bold=True,
    )
    # Row 1: decay, then read what the memory returns for k_t.
    y = 74.0
    _heat(c, 10, y, s.before, f"S{_sub(t - 1)} (before)", scale=scale)
    c.line([(14 + side, y + d * ch / 2), (54 + side, y + d * ch / 2)])
    c.text(34 + side, y + d * ch / 2 - 8, "× α", size=_SMALL)
    x2 = 60 + side
    _heat(c, x2, y, s.decayed, f"α S{_sub(t - 1)}", scale=scale)
    c.line([(x2 + side + 4, y + d * ch / 2), (x2 + side + 44, y + d * ch / 2)])
    c.text(x2 + side + 24, y + d * ch / 2 - 8, "· k", size=_SMALL)
    x3 = x2 + side + 50
    _heat(c, x3, y, s.recalled[:, None], "v_old", scale=scale)
    _heat(c, x3 + cw + 16, y, s.value[:, None], "v", scale=scale)
    _heat(c, x3 + 2 * cw + 32, y, (s.value - s.recalled)[:, None], "v − v_old", scale=scale)
    c.text(x3 + 1.5 * cw + 16, y + d * ch + 18, "the memory's answer for k", size=_SMALL)
    c.width = max(c.width, x3 + 3 * cw + 40)
    # Row 2: write the correction in.
    y = y + d * ch + 70
    _heat(c, 10, y, s.correction, "β (v − v_old) kᵀ", scale=scale)
    c.text(18 + side, y + d * ch / 2 + 5, f"+ α S{_sub(t - 1)}", anchor="start")
    c.text(70 + side, y + d * ch / 2 + 5, "=", anchor="start")
    x4 = 90 + side
    _heat(c, x4, y, s.after, f"S{_sub(t)} (after)", scale=scale)
    x5 = x4 + side + 30
    _heat(c, x5, y, read_after[:, None], f"S{_sub(t)} k", scale=scale)
    c.text(
        10,
        y + d * ch + 20,
        f"S{_sub(t)} k = (1 − β) v_old + β v: moved towards v, {miss_delta:.2f} from it",
        size=_SMALL,
        anchor="start",
        italic=True,
    )
    # Row 3: linear attention only adds.
    y = y + d * ch + 80
    c.text(10, y - 30, "Linear attention instead only adds:", anchor="start", bold=True)
    _heat(c, 10, y, s.additive, f"S{_sub(t - 1)} + v kᵀ", scale=scale)
    x6 = 40 + side
    _heat(c, x6, y, read_added[:, None], "… · k", scale=scale)
    c.text(x6 + cw + 10, y + 15, f"= S{_sub(t - 1)} k + v", size=_SMALL, anchor="start")
    c.text(
        x6 + cw + 10,
        y + 33,
        f"v lands on top of the old recall: {miss_added:.2f} from v",
        size=_SMALL,
        anchor="start",
        italic=True,
    )
    c.height = y + d * ch + 14

    def vec(x: Tensor) -> str:
        return "(" + ", ".join(f"{float(e):.2f}" for e in x) + ")"

    def rows(m: Tensor) -> str:
        return ", ".join(vec(row) for row in m)

    title = "One step of the gated delta rule: decay, read, correct; and linear attention's write"
    description = (
        f"A {d} by {d} memory S, values by keys, after {t - 1} tokens of the gated delta rule "
        f"(numbers from the package's delta_rule_recurrent, seed {seed}); its rows are "
        f"{rows(s.before)}. Token {t} brings the "
        f"unit key k = {vec(s.key)}, the value v = {vec(s.value)}, the writing strength "
        f"beta = {s.beta:.2f} and the decay alpha = {s.alpha:.2f}. First the memory fades: "
        f"every entry times {s.alpha:.2f}. Then it is read with k: it returns "
        f"v_old = {vec(s.recalled)}, which is not v. The error v minus v_old, times beta, "
        f"is written in along k, as the outer product beta (v - v_old) k transposed, and the "
        f"new state S{t} is the decayed one plus that correction, with rows {rows(s.after)}. "
        f"Read with k again, S{t} "
        f"returns {vec(read_after)}: v_old moved {s.beta:.2f} of the way to v, "
        f"{miss_delta:.2f} from v. Linear attention only adds: S{t - 1} plus v k transposed "
        f"returns {vec(read_added)} for k, the old recall plus v, {miss_added:.2f} from v."
    )
    return c.render("delta-rule-update", title, description)


#: Every diagram of the book, by name.
ALL = {
    "encoder-decoder": encoder_decoder,
    "qkv-flow": qkv_flow,
    "mask-then-softmax": mask_then_softmax,
    "head-split": head_split,
    "prenorm-block": prenorm_block,
    "flash-tiling": flash_tiling,
    "latent-attention-flow": latent_attention_flow,
    "delta-rule-update": delta_rule_update,
}
