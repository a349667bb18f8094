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
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor

from attention.functional import causal_mask, masked_softmax
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
    c.text(wx + n * cell / 2, mid - xh / 2 - 8, "A", bold=True)
    c.text(wx + n * cell / 2, mid + xh / 2 + 16, _shape(t.weights), size=_SMALL)
    c.text(wx + n * cell / 2, mid + xh / 2 + 30, "weights", size=_SMALL, italic=True)
    # Context = A V.
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
        f"weights A, {_shape(t.weights)}, whose rows sum to one. A times V gives the context "
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


#: Every diagram of the book, by name.
ALL = {
    "encoder-decoder": encoder_decoder,
    "qkv-flow": qkv_flow,
    "mask-then-softmax": mask_then_softmax,
    "head-split": head_split,
    "prenorm-block": prenorm_block,
    "flash-tiling": flash_tiling,
}
