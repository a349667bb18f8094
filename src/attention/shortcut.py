"""Why shortcut connections: the book's small experiment on gradients (chapter 11).

A stack of five GELU layers, with and without shortcut connections, and the
mean size of each layer's weight gradient after one backward pass: without
shortcuts the gradients shrink towards the first layer.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from attention import _checks
from attention.gpt import GELU

__all__ = ["DeepNetwork", "weight_gradient_means"]


class DeepNetwork(nn.Module):
    """The book's five-layer toy network for the shortcut experiment.

    Layer i computes ``y = GELU(W_i x + b_i)``; with shortcuts the layer adds
    its input, ``x + y``, whenever the shapes agree.

    Args:
        layer_sizes: Six widths, input first (the book: [3, 3, 3, 3, 3, 1]).
        use_shortcut: Add each layer's input to its output.

    Attributes:
        layers: ``nn.ModuleList`` of five ``nn.Sequential(Linear, GELU)``.

    Example:
        >>> import torch
        >>> DeepNetwork([3, 3, 3, 3, 3, 1], use_shortcut=True)(torch.ones(1, 3)).shape
        torch.Size([1, 1])
    """

    def __init__(self, layer_sizes: Sequence[int], use_shortcut: bool) -> None:
        super().__init__()
        sizes = [_checks.positive_int("layer_sizes[i]", s) for s in layer_sizes]
        if len(sizes) != 6:
            raise ValueError(f"layer_sizes must hold 6 widths, got {len(sizes)}")
        self.use_shortcut = _checks.flag("use_shortcut", use_shortcut)
        self.layers = nn.ModuleList(
            [nn.Sequential(nn.Linear(a, b), GELU()) for a, b in itertools.pairwise(sizes)]
        )

    def forward(self, x: Tensor) -> Tensor:
        """Run the five layers.

        Args:
            x: Tensor of shape (B, layer_sizes[0]).

        Returns:
            Tensor of shape (B, layer_sizes[-1]).
        """
        for layer in self.layers:
            out = layer(x)  # (B, d_out of the layer)
            x = x + out if self.use_shortcut and x.shape == out.shape else out
        return x


def weight_gradient_means(model: nn.Module, x: Tensor) -> dict[str, float]:
    """Mean absolute gradient of every weight matrix after one backward pass.

    The loss is the mean squared error between ``model(x)`` and zeros.
    Gradients accumulate into ``model``'s parameters, as ``backward`` does.

    Args:
        model: For example a :class:`DeepNetwork`.
        x: Its input.

    Returns:
        ``{name: mean(|grad|)}`` for every parameter whose name contains
        ``"weight"``, in the model's order.

    Example:
        >>> import torch
        >>> torch.manual_seed(123)  # doctest: +ELLIPSIS
        <torch._C.Generator object at ...>
        >>> net = DeepNetwork([3, 3, 3, 3, 3, 1], use_shortcut=False)
        >>> list(weight_gradient_means(net, torch.tensor([[1.0, 0.0, -1.0]])))[0]
        'layers.0.0.weight'
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    output = model(x)
    loss = nn.functional.mse_loss(output, torch.zeros_like(output))
    loss.backward()  # type: ignore[no-untyped-call]
    return {
        name: float(p.grad.abs().mean())
        for name, p in model.named_parameters()
        if "weight" in name and p.grad is not None
    }
