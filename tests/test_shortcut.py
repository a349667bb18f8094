"""Chapter 11: the book's shortcut experiment, to its published gradients."""

from __future__ import annotations

import pytest
import torch

from attention.shortcut import DeepNetwork, weight_gradient_means

# ch04 In [19] and In [20]: mean |grad| per weight, seed 123, input [[1, 0, -1]].
BOOK_GRADS_WITHOUT = [
    0.00020173587836325169,
    0.00012011159560643137,
    0.0007152039906941354,
    0.0013988736318424344,
    0.005049645435065031,
]
BOOK_GRADS_WITH = [
    0.22169792652130127,
    0.20694106817245483,
    0.32896995544433594,
    0.2665732204914093,
    1.3258540630340576,
]


@pytest.mark.parametrize(
    ("use_shortcut", "expected"), [(False, BOOK_GRADS_WITHOUT), (True, BOOK_GRADS_WITH)]
)
def test_shortcut_gradients_book_numbers(device, use_shortcut, expected):
    # The weights are drawn on the CPU, as in the book, then moved: every device
    # must give the book's gradients.
    torch.manual_seed(123)
    net = DeepNetwork([3, 3, 3, 3, 3, 1], use_shortcut=use_shortcut).to(device)
    grads = weight_gradient_means(net, torch.tensor([[1.0, 0.0, -1.0]], device=device))
    assert list(grads) == [f"layers.{i}.0.weight" for i in range(5)]
    assert torch.allclose(torch.tensor(list(grads.values())), torch.tensor(expected), rtol=1e-4)


def test_bad_layer_sizes():
    with pytest.raises(ValueError, match=r"layer_sizes must hold 6 widths, got 3"):
        DeepNetwork([3, 3, 1], use_shortcut=True)
    with pytest.raises(ValueError, match=r"layer_sizes\[i\] must be a positive int, got 0"):
        DeepNetwork([3, 0, 3, 3, 3, 1], use_shortcut=True)
    with pytest.raises(TypeError, match=r"use_shortcut must be a bool"):
        DeepNetwork([3] * 6, use_shortcut=1)
