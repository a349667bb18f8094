"""Shape diagrams (chapters 7 and 8): tensors drawn as boxes of cells.

:func:`shape_box` and :func:`shape_diagram` draw tensors as boxes of cells
(a 3-D tensor is a stack of matrices) joined by operators, for example a
batched matrix product ``(B, T, D) @ (B, D, T) -> (B, T, T)``. The figure is
inline SVG that takes its text and line colour from the page, so it reads in
light and dark themes alike. Chapter 8 draws the steps recorded by
:func:`attention.tracing.trace_multihead` with it.

Needs nothing beyond torch: the figures are markup, not images.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from torch import Tensor

#: Fills of successive boxes; drawn half-transparent, so they suit both themes.
PALETTE = ("#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#b07aa1", "#9c755f")
_CELL = 12  # px per element, up to _GRID elements along an axis
_GRID = 12  # longer axes are drawn shortened, without cell lines
_PAGE = 7  # px between the stacked matrices of a 3-D or 4-D tensor
_PAGES = 4  # at most this many stacked matrices are drawn
_CHAR = 7.0  # approximate width of one character of 12 px text
_GAP = 10  # px around operators
_OP_CHAR = 9.0  # approximate width of one character of an operator (18 px text)


@dataclass(frozen=True)
class ShapeBox:
    """One tensor of a shape diagram: a label, a shape and its dimension names.

    Attributes:
        label: The tensor's name, written above it.
        shape: The tensor's shape.
        dims: One name per dimension (for example ``("B", "T", "d_in")``), or
            empty to write sizes only.
        color: Fill colour (CSS). Default: the next colour of :data:`PALETTE`.
    """

    label: str
    shape: tuple[int, ...]
    dims: tuple[str, ...] = ()
    color: str | None = None


def shape_box(
    label: str,
    tensor_or_shape: Tensor | Sequence[int],
    dims: Sequence[str] | None = None,
    *,
    color: str | None = None,
) -> ShapeBox:
    """Describe a tensor for :func:`shape_diagram`.

    Args:
        label: The tensor's name, written above its box.
        tensor_or_shape: A tensor (its shape is used) or a shape.
        dims: One name per dimension, for example ``("B", "T", "d_in")``.
            Default: none, sizes only.
        color: A CSS fill colour. Default: the palette, by position.

    Returns:
        A :class:`ShapeBox`.

    Example:
        >>> shape_box("batch", (2, 6, 3), ("B", "T", "d_in")).shape
        (2, 6, 3)
    """
    if not isinstance(label, str):
        raise TypeError(f"label must be a str, got {type(label).__name__}")
    if isinstance(tensor_or_shape, Tensor):
        shape = tuple(tensor_or_shape.shape)
    elif isinstance(tensor_or_shape, Sequence) and not isinstance(tensor_or_shape, str):
        shape = tuple(tensor_or_shape)
    else:
        raise TypeError(
            f"tensor_or_shape must be a tensor or a sequence of ints, "
            f"got {type(tensor_or_shape).__name__}"
        )
    if not all(isinstance(n, int) and not isinstance(n, bool) and n > 0 for n in shape):
        raise ValueError(f"tensor_or_shape must have positive sizes, got shape {shape!r}")
    names = tuple(str(d) for d in dims) if dims is not None else ()
    if names and len(names) != len(shape):
        raise ValueError(
            f"dims must name each of the {len(shape)} dimensions of shape {shape}, "
            f"got {len(names)} names {names}"
        )
    return ShapeBox(label, shape, names, color)


@dataclass(frozen=True)
class ShapeDiagram:
    """A rendered shape diagram: inline SVG plus a text description.

    Attributes:
        svg: The ``<svg>`` element.
        description: The diagram in words, for screen readers and ``repr``.
        title: Optional caption.
    """

    svg: str
    description: str
    title: str | None = None

    def to_html(self) -> str:
        """The diagram as an HTML ``<figure>``, with its caption if any."""
        caption = (
            '<figcaption style="font-size:0.9em;margin-top:0.25rem;color:inherit">'
            f"{html.escape(self.title)}</figcaption>"
            if self.title
            else ""
        )
        return (
            '<figure class="attn-shapes" style="margin:0.5rem 0;overflow-x:auto">'
            f"{self.svg}{caption}</figure>"
        )

    def _repr_html_(self) -> str:
        return self.to_html()

    def __repr__(self) -> str:
        return f"ShapeDiagram({self.description!r})"


def _length(n: int) -> float:
    """Drawn length of an axis of n elements: n cells, shortened past _GRID."""
    return _CELL * n if n <= _GRID else _CELL * _GRID + min(24.0, 6 * math.log2(n / _GRID))


def _size(box: ShapeBox, i: int) -> str:
    return f"{box.dims[i]}={box.shape[i]}" if box.dims else str(box.shape[i])


@dataclass
class _Layout:
    """One box's drawing, in coordinates relative to (left edge, grid centre)."""

    width: float = 0.0
    above: float = 0.0  # extent above the grid's centre
    below: float = 0.0  # extent below it
    rects: list[tuple[float, float, float, float]] = field(default_factory=list)
    lines: list[tuple[float, float, float, float]] = field(default_factory=list)
    texts: list[tuple[float, float, str, str]] = field(default_factory=list)

    def svg(self, x0: float, cy: float, color: str) -> str:
        """The box's elements, shifted to left edge ``x0`` and grid centre ``cy``."""
        fill = html.escape(color)
        out = [
            f'<rect x="{x0 + x:.1f}" y="{cy + y:.1f}" width="{w:.1f}" height="{h:.1f}" '
            f'fill="{fill}" fill-opacity="0.45" stroke="currentColor"/>'
            for x, y, w, h in self.rects
        ]
        out += [
            f'<line x1="{x0 + a:.1f}" y1="{cy + b:.1f}" x2="{x0 + c:.1f}" y2="{cy + d:.1f}" '
            'stroke="currentColor" stroke-opacity="0.35"/>'
            for a, b, c, d in self.lines
        ]
        for x, y, text, style in self.texts:
            ax, ay = x0 + x, cy + y
            attrs = {
                "bold": ' font-weight="bold"',
                "faint": ' opacity="0.7"',
                "rotated": f' transform="rotate(-90 {ax:.1f} {ay:.1f})"',
                "start": ' text-anchor="start"',
            }.get(style, "")
            anchor = "" if style == "start" else ' text-anchor="middle"'
            out.append(
                f'<text x="{ax:.1f}" y="{ay:.1f}" fill="currentColor"{anchor}{attrs}>'
                f"{html.escape(text)}</text>"
            )
        return "".join(out)


def _layout(box: ShapeBox) -> _Layout:
    """Lay out one box: its stacked matrices, cell lines and labels."""
    shape = box.shape
    rows, cols = (shape[-2], shape[-1]) if len(shape) >= 2 else (1, shape[-1] if shape else 1)
    lead = shape[:-2]
    back = min(math.prod(lead), _PAGES) - 1  # stacked matrices drawn behind the front one
    w, h, depth = _length(cols), _length(rows), back * _PAGE
    col_text = _size(box, len(shape) - 1) if shape else "scalar"
    row_text = _size(box, len(shape) - 2) if len(shape) >= 2 else ""
    lead_text = ""
    if lead:
        sizes = "·".join(str(n) for n in lead)
        lead_text = f"{'·'.join(box.dims[: len(lead)])}={sizes}" if box.dims else sizes
    shape_text = f"({shape[0]},)" if len(shape) == 1 else str(shape)
    left = 16.0 if row_text else 0.0  # room for the rotated row label
    lead_w = len(lead_text) * _CHAR + 6 if lead_text else 0.0
    # Texts are centred under the grid: the box is wide enough for the widest.
    half = max(len(t) for t in (box.label, col_text, shape_text)) * _CHAR / 2 + 2
    mid = max(half, left + w / 2)  # the grid's centre, from the box's left edge
    gx = mid - w / 2  # the front grid's left edge
    out = _Layout(
        width=max(mid + half, gx + w + depth + lead_w) + 2,
        above=h / 2 + depth + 22,
        below=h / 2 + 34,
    )
    for k in range(back, 0, -1):  # back matrices first, so the front one covers them
        out.rects.append((gx + k * _PAGE, -h / 2 - k * _PAGE, w, h))
    out.rects.append((gx, -h / 2, w, h))
    if rows <= _GRID and cols <= _GRID:
        out.lines += [(gx + c * _CELL, -h / 2, gx + c * _CELL, h / 2) for c in range(1, cols)]
        out.lines += [(gx, -h / 2 + r * _CELL, gx + w, -h / 2 + r * _CELL) for r in range(1, rows)]
    out.texts.append((mid, -h / 2 - depth - 8, box.label, "bold"))
    out.texts.append((mid, h / 2 + 15, col_text, ""))
    out.texts.append((mid, h / 2 + 29, shape_text, "faint"))
    if row_text:
        out.texts.append((gx - 5, 0.0, row_text, "rotated"))
    if lead_text:
        out.texts.append((gx + w + depth + 4, -h / 2 - depth + 10, lead_text, "start"))
    return out


def shape_diagram(*parts: ShapeBox | str, title: str | None = None) -> ShapeDiagram:
    """Draw tensors as boxes of cells, joined by operators, left to right.

    A matrix is a grid of rows x columns (one cell per element, up to 12 along
    an axis; longer axes are drawn shortened, without cell lines). Leading
    dimensions stack copies of the matrix behind it, so a (B, T, D) tensor is
    B matrices of T x D. Each box names its dimensions and shows its shape.

    Args:
        *parts: :class:`ShapeBox` objects (see :func:`shape_box`) and operator
            strings between them, for example ``"@"``, ``"="``, ``"→"``.
        title: Optional caption under the figure.

    Returns:
        A :class:`ShapeDiagram`, displayed as inline SVG in a notebook.

    Example:
        >>> d = shape_diagram(shape_box("x", (2, 6, 3), ("B", "T", "d_in")))
        >>> d.description
        'x (2, 6, 3) [B, T, d_in]'
    """
    if not parts:
        raise ValueError("parts must hold at least one ShapeBox, got none")
    items: list[tuple[ShapeBox, _Layout] | str] = []
    for i, part in enumerate(parts):
        if isinstance(part, ShapeBox):
            items.append((part, _layout(part)))
        elif isinstance(part, str):
            items.append(part)
        else:
            raise TypeError(
                f"parts must be ShapeBox objects or operator strings, "
                f"got {type(part).__name__} at position {i}"
            )
    layouts = [it[1] for it in items if not isinstance(it, str)]
    if not layouts:
        raise ValueError("parts must hold at least one ShapeBox, got only operators")
    above = max(lay.above for lay in layouts)
    height = above + max(lay.below for lay in layouts)
    svg, words, x, n_box = [], [], 0.0, 0
    for it in items:
        if isinstance(it, str):
            x += _GAP
            middle = x + len(it) * _OP_CHAR / 2
            svg.append(
                f'<text x="{middle:.1f}" y="{above + 6:.1f}" fill="currentColor" '
                f'text-anchor="middle" font-size="18">{html.escape(it)}</text>'
            )
            x += len(it) * _OP_CHAR + _GAP
            words.append(it)
            continue
        box, lay = it
        color = box.color or PALETTE[n_box % len(PALETTE)]
        svg.append(lay.svg(x, above, color))
        x += lay.width
        n_box += 1
        letters = f" [{', '.join(box.dims)}]" if box.dims else ""
        words.append(f"{box.label} {box.shape}{letters}")
    description = " ".join(words)
    label = html.escape(description if title is None else f"{title}: {description}")
    return ShapeDiagram(
        svg=(
            f'<svg xmlns="http://www.w3.org/2000/svg" role="img" aria-label="{label}" '
            f'width="{x:.0f}" height="{height:.0f}" viewBox="0 0 {x:.0f} {height:.0f}" '
            'font-family="sans-serif" font-size="12" style="max-width:100%;height:auto">'
            f"{''.join(svg)}</svg>"
        ),
        description=description,
        title=title,
    )
