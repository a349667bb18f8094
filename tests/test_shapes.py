"""Chapters 7 and 8: shape diagrams."""

from __future__ import annotations

import re

import pytest
import torch

from attention.shapes import PALETTE, ShapeBox, ShapeDiagram, shape_box, shape_diagram


def test_shape_box_from_tensor_or_shape():
    assert shape_box("x", torch.zeros(2, 6, 3), ["B", "T", "d_in"]) == ShapeBox(
        "x", (2, 6, 3), ("B", "T", "d_in")
    )
    assert shape_box("w", (3, 2)).dims == ()


def test_shape_diagram_of_a_batch():
    diagram = shape_diagram(shape_box("batch", (2, 6, 3), ("B", "T", "d_in")), title="A batch")
    assert isinstance(diagram, ShapeDiagram)
    assert diagram.description == "batch (2, 6, 3) [B, T, d_in]"
    svg = diagram.svg
    assert svg.startswith('<svg xmlns="http://www.w3.org/2000/svg" role="img"')
    assert 'aria-label="A batch: batch (2, 6, 3) [B, T, d_in]"' in svg
    # Two stacked 6 x 3 matrices (B = 2), the front one with its cell lines.
    assert svg.count("<rect") == 2
    assert svg.count("<line") == (3 - 1) + (6 - 1)
    assert re.search(r'<rect [^>]*width="36\.0" height="72\.0"', svg)  # 3 and 6 cells of 12 px
    texts = re.findall(r"<text [^>]*>([^<]*)</text>", svg)
    assert texts == ["batch", "d_in=3", "(2, 6, 3)", "T=6", "B=2"]
    assert 'fill="currentColor"' in svg  # text follows the page's colour (light or dark)
    assert PALETTE[0] in svg
    assert diagram._repr_html_() == diagram.to_html()
    assert diagram.to_html().endswith(">A batch</figcaption></figure>")
    assert (
        shape_diagram(shape_box("batch", (2, 6, 3), ("B", "T", "d_in")), title="A batch") == diagram
    )


def test_shape_diagram_of_a_batched_matmul():
    diagram = shape_diagram(
        shape_box("queries", (2, 6, 2), ("B", "T", "D")),
        "@",
        shape_box("keys", (2, 2, 6), ("B", "D", "T")),
        "=",
        shape_box("scores", (2, 6, 6), ("B", "T", "T")),
    )
    assert diagram.description == (
        "queries (2, 6, 2) [B, T, D] @ keys (2, 2, 6) [B, D, T] = scores (2, 6, 6) [B, T, T]"
    )
    for color in PALETTE[:3]:
        assert f'fill="{color}"' in diagram.svg
    assert diagram.svg.count("<rect") == 6


def test_shape_diagram_large_and_small_shapes():
    big = shape_diagram(shape_box("w", (768, 3072)), shape_box("v", (5,)), shape_box("s", ()))
    assert big.svg.count("<line") == 4  # only the 5-vector has cell lines
    assert "scalar" in big.svg
    heads = shape_diagram(shape_box("q", (2, 12, 6, 64), ("B", "H", "T", "D")))
    assert heads.svg.count("<rect") == 4  # 24 matrices, at most 4 drawn
    assert ">B·H=2·12</text>" in heads.svg


def test_shape_diagram_bad_input():
    with pytest.raises(ValueError, match="dims must name each of the 3 dimensions"):
        shape_box("x", (2, 6, 3), ("B", "T"))
    with pytest.raises(
        ValueError, match=r"tensor_or_shape must have positive sizes, got shape \(2, 0\)"
    ):
        shape_box("x", (2, 0))
    with pytest.raises(TypeError, match="tensor_or_shape must be a tensor or a sequence of ints"):
        shape_box("x", "2x3")
    with pytest.raises(TypeError, match="label must be a str, got int"):
        shape_box(3, (2,))
    with pytest.raises(ValueError, match="parts must hold at least one ShapeBox, got none"):
        shape_diagram()
    with pytest.raises(ValueError, match="got only operators"):
        shape_diagram("@")
    with pytest.raises(TypeError, match="got tuple at position 1"):
        shape_diagram(shape_box("x", (2,)), (2, 3))
