"""How multi-head attention's head split lays out memory, computed by torch.

Multi-head attention keeps its projected tokens as one (B, T, H·D) tensor and
splits it into heads with ``.view(B, T, H, D).transpose(1, 2)``. This module
applies those operations, and the tempting wrong one, ``.view(B, H, T, D)``
with no transpose, to a tensor whose every element holds its own memory
offset, and records what torch reports at each step: the shape, the strides,
``is_contiguous()`` and, for every element in the order the shape reads
them, the memory place it comes from. The widget of kind ``"layout"``
(``attention/static/attention-layout.js``) draws those steps and recomputes
them in the browser; the browser tests hold the two equal.

Example:
    >>> steps = layout_steps(1, 3, 2, 2)
    >>> [s["stride"] for s in steps]
    [[12, 4, 1], [12, 4, 2, 1], [12, 2, 4, 1], [12, 6, 2, 1]]
    >>> [s["contiguous"] for s in steps]
    [True, True, False, True]
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from attention import _checks
from attention.widgets import Widget

#: The sizes (B, T, H, d_head) the widget offers: small enough to draw.
DEFAULT_SIZES: tuple[tuple[int, int, int, int], ...] = ((1, 3, 2, 2), (2, 3, 2, 2), (1, 4, 2, 3))


def _apply(x: Tensor, op: str, batch: int, tokens: int, heads: int, d_head: int) -> Tensor:
    if op == "view-heads":
        return x.view(batch, tokens, heads, d_head)
    if op == "transpose":
        return x.transpose(1, 2)
    return x.view(batch, heads, tokens, d_head)  # "view-wrong"


#: Each step: its name, its code, the step it starts from and its operation.
_STEPS: tuple[tuple[str, str, str | None, str | None], ...] = (
    ("x", "x  # (B, T, H·d_head)", None, None),
    ("view", "x.view(B, T, H, d_head)", "x", "view-heads"),
    ("transpose", "x.view(B, T, H, d_head).transpose(1, 2)", "view", "transpose"),
    ("wrong", "x.view(B, H, T, d_head)  # no transpose", "x", "view-wrong"),
)


def layout_steps(batch: int, tokens: int, heads: int, d_head: int) -> list[dict[str, Any]]:
    """The head split's steps, as torch reports them, for one choice of sizes.

    Args:
        batch: B, the number of sequences.
        tokens: T, the tokens per sequence.
        heads: H, the number of heads.
        d_head: D, the features per head.

    Returns:
        One dict per step (``x``, ``view``, ``transpose``, ``wrong``): its
        ``name``, ``code``, ``shape``, ``stride``, ``contiguous`` and
        ``offsets``, the memory place of each element in row-major order of
        the step's shape.
    """
    b = _checks.positive_int("batch", batch)
    t = _checks.positive_int("tokens", tokens)
    h = _checks.positive_int("heads", heads)
    d = _checks.positive_int("d_head", d_head)
    # Every element holds its own memory offset, so reading the elements in
    # the order of a step's shape lists the places they come from.
    x = torch.arange(b * t * h * d).view(b, t, h * d)
    tensors: dict[str, Tensor] = {}
    steps = []
    for name, code, source, op in _STEPS:
        y = x if source is None or op is None else _apply(tensors[source], op, b, t, h, d)
        tensors[name] = y
        if y.data_ptr() != x.data_ptr() or y.storage_offset() != 0:
            raise RuntimeError(f"step {name} should share the memory of x")  # views never copy
        steps.append(
            {
                "name": name,
                "code": code,
                "shape": list(y.shape),
                "stride": list(y.stride()),
                "contiguous": y.is_contiguous(),
                "offsets": y.flatten().tolist(),
            }
        )
    return steps


def _fallback(cases: list[dict[str, Any]]) -> str:
    """The first case's steps as a static table: code, shape, strides, contiguity."""
    case = cases[0]
    rows = "".join(
        f"<tr><td><code>{html.escape(s['code'])}</code></td><td>{tuple(s['shape'])}</td>"
        f"<td>{tuple(s['stride'])}</td><td>{s['contiguous']}</td></tr>"
        for s in case["steps"]
    )
    return (
        f"<table><caption>{html.escape(case['label'])}</caption><thead><tr>"
        "<th>step</th><th>shape</th><th>stride()</th><th>is_contiguous()</th>"
        f"</tr></thead><tbody>{rows}</tbody></table>"
    )


def layout_widget(sizes: Sequence[tuple[int, int, int, int]] = DEFAULT_SIZES) -> Widget:
    """The head split's memory layout, to step through, for a few choices of sizes.

    Args:
        sizes: The (B, T, H, d_head) choices the reader can pick from, each
            with at most 48 elements (the widget draws every one).

    Returns:
        A :class:`~attention.widgets.Widget` of kind ``"layout"``.

    Example:
        >>> layout_widget().kind
        'layout'
    """
    if isinstance(sizes, str) or not isinstance(sizes, Sequence) or not sizes:
        raise ValueError(f"sizes must be a non-empty sequence of (B, T, H, d_head), got {sizes!r}")
    cases = []
    for entry in sizes:
        if not isinstance(entry, tuple | list) or len(entry) != 4:
            raise ValueError(f"sizes must hold (B, T, H, d_head) tuples, got {entry!r}")
        b, t, h, d = entry
        steps = layout_steps(b, t, h, d)
        if b * t * h * d > 48:
            raise ValueError(
                f"sizes must hold at most 48 elements per choice, got {entry!r} "
                f"({b * t * h * d} elements)"
            )
        cases.append(
            {
                "sizes": {"B": b, "T": t, "H": h, "d_head": d},
                "label": f"B = {b}, T = {t}, H = {h}, d_head = {d}",
                "steps": steps,
            }
        )
    return Widget(
        "layout",
        {"cases": cases},
        label="Memory layout of the head split: view, transpose and strides",
        fallback=_fallback(cases),
    )
