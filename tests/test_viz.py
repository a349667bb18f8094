from __future__ import annotations

import pytest
import torch

from attention import TOKENS, causal_mask, simple_self_attention, toy_inputs
from attention.viz import heatmap


def test_heatmap_labels_values_and_colour_bar():
    _, weights = simple_self_attention(toy_inputs(), return_weights=True)
    fig = heatmap(weights, row_labels=TOKENS, title="weights")
    ax, colour_bar = fig.axes
    assert [t.get_text() for t in ax.get_yticklabels()] == list(TOKENS)
    assert [t.get_text() for t in ax.get_xticklabels()] == list(TOKENS)
    written = [t.get_text() for t in ax.texts]
    assert len(written) == 36
    assert written[7] == f"{weights[1, 1].item():.2f}"
    assert colour_bar is not ax


def test_blocked_cells_are_not_written_and_are_hatched():
    weights = torch.rand(4, 4)
    fig = heatmap(weights, blocked=causal_mask(4))
    ax = fig.axes[0]
    assert len(ax.texts) == 10  # the 6 blocked cells of a 4 x 4 causal mask stay empty
    assert sum(1 for p in ax.patches if p.get_hatch() == "///") == 6


def test_large_matrices_are_not_annotated():
    assert len(heatmap(torch.rand(20, 20)).axes[0].texts) == 0


def test_a_wide_matrix_gets_a_wide_figure_and_a_square_one_a_square_figure():
    wide_w, wide_h = heatmap(torch.rand(3, 11)).get_size_inches()
    tall_w, tall_h = heatmap(torch.rand(11, 3)).get_size_inches()
    square_w, square_h = heatmap(torch.rand(11, 11)).get_size_inches()
    assert wide_w > 2 * wide_h  # three rows of eleven cells: flat
    assert tall_h > tall_w - 2.2  # the colour bar's margin aside, taller than wide
    assert (square_w, square_h) == (wide_w, tall_h)  # exact: the same float products


def test_bad_arguments():
    with pytest.raises(ValueError, match=r"row_labels must be a sequence of 3 labels, got 2"):
        heatmap(torch.rand(3, 3), row_labels=["a", "b"])
    with pytest.raises(ValueError, match=r"matrix must have shape \(rows, cols\)"):
        heatmap(torch.rand(3))
    with pytest.raises(ValueError, match=r"blocked must be a bool tensor of shape \(3, 3\)"):
        heatmap(torch.rand(3, 3), blocked=torch.zeros(3, 3))
