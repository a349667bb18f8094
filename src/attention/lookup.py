"""Attention as a soft dictionary lookup, with colours (chapter 2).

A dictionary maps a key to a value: look up ``"yellow"`` and get
``"#FFFF00"``, or nothing. A *soft* lookup compares the query with every key,
turns the similarities into weights that sum to one, and returns the weighted
blend of all the values:

    scores  = similarity(query, keys)         one number per key
    weights = softmax(scores / temperature)   positive, summing to one
    value   = weights @ values                a blend of every value

Colours make the blend visible. Each colour is embedded as its RGB triple
scaled to [0, 1], which serves as its key and as its value; a query between
"yellow" and "gold" returns a colour between them. :func:`swatches` draws
colours as small HTML swatches for a notebook.

Example:
    >>> from attention.lookup import colour_table, rgb_to_hex, soft_lookup
    >>> names, rgb = colour_table(["yellow", "gold"])
    >>> weights, value = soft_lookup(rgb.mean(dim=0), rgb, rgb, temperature=0.1)
    >>> weights.tolist(), rgb_to_hex(value)
    ([0.5, 0.5], '#FFEB00')
"""

from __future__ import annotations

import html
import math
import re
from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Literal, NamedTuple

import torch
from torch import Tensor

from attention import _checks

#: The "database": colour names and their CSS hex codes, warm to cool.
COLOURS: Mapping[str, str] = MappingProxyType(
    {
        "red": "#FF0000",
        "orange": "#FFA500",
        "gold": "#FFD700",
        "yellow": "#FFFF00",
        "green": "#008000",
        "cyan": "#00FFFF",
        "blue": "#0000FF",
        "purple": "#800080",
    }
)

#: How a query is compared with a key: minus the squared distance, or the dot product.
Similarity = Literal["distance", "dot"]

_HEX = re.compile(r"#[0-9A-Fa-f]{6}")


class Lookup(NamedTuple):
    """What a lookup returns: one weight per key, and the blended value."""

    weights: Tensor
    value: Tensor


def hex_to_rgb(code: str) -> Tensor:
    """Turn a hex colour ``"#RRGGBB"`` into its RGB triple scaled to [0, 1].

    ``rgb = (int(RR, 16), int(GG, 16), int(BB, 16)) / 255``

    Args:
        code: A colour as ``#`` and six hex digits, either case.

    Returns:
        Tensor of shape (3,), dtype float32, entries in [0, 1].

    Example:
        >>> hex_to_rgb("#FFD700").mul(255).round().tolist()
        [255.0, 215.0, 0.0]
    """
    if not isinstance(code, str):
        raise TypeError(f"code must be a str like '#FFD700', got {type(code).__name__} {code!r}")
    if not _HEX.fullmatch(code):
        raise ValueError(f"code must be '#' and six hex digits, like '#FFD700', got {code!r}")
    channels = [int(code[i : i + 2], 16) for i in (1, 3, 5)]
    return torch.tensor(channels, dtype=torch.float32) / 255  # (3,)


def rgb_to_hex(rgb: Tensor) -> str:
    """Turn an RGB triple in [0, 1] into ``"#RRGGBB"``, rounding to the nearest code.

    ``code = "#" + hex(round(255 * r)) + hex(round(255 * g)) + hex(round(255 * b))``

    Args:
        rgb: Tensor of shape (3,), entries in [0, 1] (rounding errors up to
            1e-4 outside the interval are clipped).

    Returns:
        The colour as ``#`` and six upper-case hex digits.

    Example:
        >>> import torch
        >>> rgb_to_hex(torch.tensor([1.0, 0.5, 0.0]))
        '#FF8000'
    """
    c = _checks.floating("rgb", rgb, ranks=(1,), layout="(3,)")
    _checks.last_dim("rgb", c, 3, "channels")
    c = c.detach().to("cpu", torch.float64)
    if c.isnan().any() or (c < -1e-4).any() or (c > 1 + 1e-4).any():
        raise ValueError(f"rgb must have entries in [0, 1], got {c.tolist()}")
    channels = (c.clamp(0, 1) * 255).round().to(torch.int64).tolist()
    return "#" + "".join(f"{v:02X}" for v in channels)


def colour_table(names: Sequence[str] | None = None) -> tuple[tuple[str, ...], Tensor]:
    """The keys of the colour database: names and their RGB embeddings.

    Args:
        names: Which colours of :data:`COLOURS`, in this order.
            Default: all of them, in the table's order.

    Returns:
        The names, and a tensor of shape (N, 3) with one RGB row per name.

    Example:
        >>> names, rgb = colour_table(["red", "blue"])
        >>> names, rgb.shape
        (('red', 'blue'), torch.Size([2, 3]))
    """
    chosen = tuple(COLOURS) if names is None else names
    if isinstance(chosen, str):
        raise TypeError(f"names must be a sequence of colour names, got the string {chosen!r}")
    unknown = [n for n in chosen if n not in COLOURS]
    if unknown or not chosen:
        raise ValueError(
            f"names must be a non-empty list of colours from {list(COLOURS)}, "
            f"got {list(chosen)} (unknown: {unknown})"
        )
    rows = torch.stack([hex_to_rgb(COLOURS[n]) for n in chosen])  # N x (3,) -> (N, 3)
    return tuple(chosen), rows


def lookup_scores(query: Tensor, keys: Tensor, *, similarity: Similarity = "distance") -> Tensor:
    """Compare a query with every key: one similarity score per key.

    ``"distance"``: ``-||q - k||^2``; ``"dot"``: ``q · k``.

    Minus the squared distance is largest (zero) for a key equal to the query.
    The dot product, attention's similarity, also grows with a key's length,
    so a long key can beat an exact match.

    Args:
        query: One query (d_k,) or several (M, d_k).
        keys: The keys, shape (N, d_k).
        similarity: ``"distance"`` or ``"dot"``. Default: ``"distance"``.

    Returns:
        Scores, shape (N,) for one query or (M, N).

    Example:
        >>> import torch
        >>> lookup_scores(torch.tensor([1.0, 0.0]), torch.eye(2)).tolist()
        [0.0, -2.0]
    """
    q = _checks.floating("query", query, ranks=(1, 2), layout="(d_k,) or (M, d_k)")
    k = _checks.floating("keys", keys, ranks=(2,), layout="(N, d_k)")
    _checks.last_dim("keys", k, q.shape[-1], "query's d_k")
    if k.shape[0] == 0:
        raise ValueError(f"keys must hold at least one key (N >= 1), got shape {tuple(k.shape)}")
    if q.dtype != k.dtype:
        raise TypeError(f"query and keys must share a dtype, got {q.dtype} and {k.dtype}")
    if similarity == "distance":
        diff = q.unsqueeze(-2) - k  # (..., 1, d_k) - (N, d_k) -> (..., N, d_k)
        return 0.0 - (diff**2).sum(dim=-1)  # (..., N); 0 - x, so an exact match is +0.0
    if similarity == "dot":
        return q @ k.T  # (..., d_k) @ (d_k, N) -> (..., N)
    raise ValueError(f"similarity must be 'distance' or 'dot', got {similarity!r}")


def _values(values: object, keys: Tensor) -> Tensor:
    v = _checks.floating("values", values, ranks=(2,), layout="(N, d_v)")
    if v.shape[0] != keys.shape[0]:
        raise ValueError(
            f"values must have one row per key ({keys.shape[0]}), got {v.shape[0]} rows"
        )
    if v.dtype != keys.dtype:
        raise TypeError(f"values and keys must share a dtype, got {v.dtype} and {keys.dtype}")
    return v


def soft_lookup(
    query: Tensor,
    keys: Tensor,
    values: Tensor,
    *,
    temperature: float = 1.0,
    similarity: Similarity = "distance",
) -> Lookup:
    """Blend every value, weighted by how well its key matches the query.

    ``weights = softmax(scores / temperature)``, ``value = weights @ values``.

    A small temperature sharpens the weights towards :func:`hard_lookup`; a
    large one flattens them towards the mean of the values. The row maximum is
    subtracted before dividing, so even a tiny temperature gives no NaN.

    Args:
        query: One query (d_k,) or several (M, d_k).
        keys: The keys, shape (N, d_k).
        values: One value per key, shape (N, d_v).
        temperature: A positive, finite number. Default: 1.0.
        similarity: How query and key are compared, see :func:`lookup_scores`.
            Default: ``"distance"``.

    Returns:
        ``Lookup(weights, value)``: weights (N,) summing to one and the value
        (d_v,); or (M, N) and (M, d_v) for several queries.

    Example:
        >>> import torch
        >>> keys = torch.eye(2)
        >>> soft_lookup(torch.tensor([0.5, 0.5]), keys, keys).value.tolist()
        [0.5, 0.5]
    """
    if isinstance(temperature, bool) or not isinstance(temperature, int | float):
        raise TypeError(
            f"temperature must be a positive float, got {type(temperature).__name__} "
            f"{temperature!r}"
        )
    if not (math.isfinite(temperature) and temperature > 0):
        raise ValueError(f"temperature must be positive and finite, got {temperature}")
    scores = lookup_scores(query, keys, similarity=similarity)  # (..., N)
    v = _values(values, keys)
    shifted = scores - scores.amax(dim=-1, keepdim=True)  # (..., N), the best key at 0
    weights = torch.softmax(shifted / temperature, dim=-1)  # (..., N)
    return Lookup(weights, weights @ v)  # (..., N) @ (N, d_v) -> (..., d_v)


def hard_lookup(
    query: Tensor, keys: Tensor, values: Tensor, *, similarity: Similarity = "distance"
) -> Lookup:
    """Return the value of the best-matching key alone: a dictionary lookup.

    ``weights = one_hot(argmax(scores))``, ``value = values[argmax(scores)]``.

    Ties go to the first of the tied keys. This is the limit of
    :func:`soft_lookup` as the temperature goes to zero.

    Args:
        query: One query (d_k,) or several (M, d_k).
        keys: The keys, shape (N, d_k).
        values: One value per key, shape (N, d_v).
        similarity: How query and key are compared, see :func:`lookup_scores`.
            Default: ``"distance"``.

    Returns:
        ``Lookup(weights, value)``: one-hot weights (N,) and the chosen value
        (d_v,); or (M, N) and (M, d_v) for several queries.

    Example:
        >>> names, rgb = colour_table()
        >>> rgb_to_hex(hard_lookup(hex_to_rgb("#FFFF00"), rgb, rgb).value)
        '#FFFF00'
    """
    scores = lookup_scores(query, keys, similarity=similarity)  # (..., N)
    v = _values(values, keys)
    best = scores.argmax(dim=-1)  # (...,)
    weights = torch.nn.functional.one_hot(best, keys.shape[0]).to(v.dtype)  # (..., N)
    return Lookup(weights, v[best])  # (..., d_v)


def _text_colour(code: str) -> str:
    """Black or white, whichever contrasts more with ``code`` (WCAG 2 formula)."""
    rgb = hex_to_rgb(code).to(torch.float64)
    linear = torch.where(rgb <= 0.04045, rgb / 12.92, ((rgb + 0.055) / 1.055) ** 2.4)
    luminance = float(linear @ torch.tensor([0.2126, 0.7152, 0.0722], dtype=torch.float64))
    on_black = (luminance + 0.05) / 0.05
    on_white = 1.05 / (luminance + 0.05)
    return "#000000" if on_black >= on_white else "#FFFFFF"


class Swatches:
    """A row of colour swatches that a notebook shows as HTML.

    Each swatch is a small box filled with its colour, its hex code written on
    it in black or white (whichever reads better), and a label underneath.
    Styles are inline, and the label takes the page's text colour, so the row
    reads on light and dark pages alike.

    Args:
        codes: Hex codes ``"#RRGGBB"``, one per swatch.
        labels: One label per swatch.
        title: A heading above the row; also its accessible name.
    """

    def __init__(self, codes: Sequence[str], labels: Sequence[str], *, title: str) -> None:
        if len(codes) != len(labels):
            raise ValueError(
                f"codes and labels must have the same length, got {len(codes)} and {len(labels)}"
            )
        self.codes = tuple(codes)
        self.labels = tuple(labels)
        self.title = title

    def to_html(self) -> str:
        """The row as HTML: a labelled group of swatches, styled inline."""
        items = []
        for code, label in zip(self.codes, self.labels, strict=True):
            name = html.escape(f"{label}: {code}")
            items.append(
                '<div style="width:6.5rem;text-align:center;font-size:0.8rem">'
                f'<div role="img" aria-label="{name}" title="{name}" style="height:3rem;'
                f"background:{code};color:{_text_colour(code)};border:1px solid "
                "rgba(128,128,128,0.6);border-radius:0.3rem;display:flex;"
                'align-items:center;justify-content:center;font-family:monospace">'
                f"{code}</div>"
                f'<div style="margin-top:0.2rem;line-height:1.2">{html.escape(label)}</div></div>'
            )
        title = html.escape(self.title)
        return (
            f'<div class="attn-swatches" role="group" aria-label="{title}" '
            'style="margin:0.5rem 0 1rem">'
            f'<div style="font-weight:600;margin-bottom:0.3rem">{title}</div>'
            '<div style="display:flex;flex-wrap:wrap;gap:0.5rem">' + "".join(items) + "</div></div>"
        )

    def _repr_html_(self) -> str:
        return self.to_html()

    def __repr__(self) -> str:
        pairs = ", ".join(
            f"{label}={code}" for code, label in zip(self.codes, self.labels, strict=True)
        )
        return f"Swatches({self.title!r}: {pairs})"


def swatches(
    colours: Sequence[str] | Tensor,
    labels: Sequence[str] | None = None,
    *,
    title: str = "Colours",
) -> Swatches:
    """Draw colours as a row of swatches (HTML in a notebook).

    Args:
        colours: Hex codes ``"#RRGGBB"``, or RGB rows in [0, 1] of shape (N, 3).
        labels: One label per colour. Default: the hex codes.
        title: A heading above the row. Default: ``"Colours"``.

    Returns:
        A :class:`Swatches`, shown as HTML by Jupyter.

    Example:
        >>> swatches(["#FFFF00", "#FFD700"], ["yellow", "gold"], title="Two keys")
        Swatches('Two keys': yellow=#FFFF00, gold=#FFD700)
    """
    if isinstance(colours, Tensor):
        rgb = _checks.floating("colours", colours, ranks=(2,), layout="(N, 3)")
        _checks.last_dim("colours", rgb, 3, "channels")
        codes = [rgb_to_hex(row) for row in rgb]
    elif isinstance(colours, str) or not isinstance(colours, Sequence):
        raise TypeError(
            f"colours must be a list of hex codes or an (N, 3) tensor, got {type(colours).__name__}"
        )
    else:
        for code in colours:
            hex_to_rgb(code)  # raises on anything that is not "#RRGGBB"
        codes = [code.upper() for code in colours]
    if labels is None:
        labels = codes
    if isinstance(labels, str) or len(labels) != len(codes):
        given = "a string" if isinstance(labels, str) else f"{len(labels)} labels"
        raise ValueError(f"labels must be a sequence of {len(codes)} labels, got {given}")
    if not isinstance(title, str):
        raise TypeError(f"title must be a str, got {type(title).__name__}")
    return Swatches(codes, [str(label) for label in labels], title=title)
