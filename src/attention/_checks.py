"""Argument checks shared by every function and layer of the package.

Each check raises ``TypeError`` (wrong kind of thing) or ``ValueError`` (right
kind, wrong value) with a message that names the argument, says what was
expected and shows what was given, so that no raw torch shape error reaches
the reader.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Sequence

import torch
from torch import Tensor
from torch.compiler import is_compiling


def positive_int(name: str, value: object) -> int:
    """Return ``value`` if it is a positive ``int`` (not a ``bool``), else raise."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be a positive int, got {type(value).__name__} {value!r}")
    if value <= 0:
        raise ValueError(f"{name} must be a positive int, got {value}")
    return value


def non_negative_int(name: str, value: object) -> int:
    """Return ``value`` if it is an ``int`` (not a ``bool``) >= 0, else raise."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int >= 0, got {type(value).__name__} {value!r}")
    if value < 0:
        raise ValueError(f"{name} must be an int >= 0, got {value}")
    return value


def positive_number(name: str, value: object) -> float:
    """Return ``value`` as a float if it is a finite number > 0, else raise."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{name} must be a positive number, got {type(value).__name__} {value!r}")
    if not (value > 0 and math.isfinite(value)):
        raise ValueError(f"{name} must be a positive number, got {value}")
    return float(value)


def probability(name: str, value: object) -> float:
    """Return ``value`` as a float if it is a number in [0, 1), else raise.

    1 is excluded: dropout rescales survivors by 1 / (1 - p).
    """
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{name} must be a float in [0, 1), got {type(value).__name__} {value!r}")
    if not (0.0 <= value < 1.0) or math.isnan(value):
        raise ValueError(f"{name} must be in [0, 1), got {value}")
    return float(value)


def flag(name: str, value: object) -> bool:
    """Return ``value`` if it is a ``bool``, else raise."""
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be a bool, got {type(value).__name__} {value!r}")
    return value


def tensor(name: str, value: object) -> Tensor:
    """Return ``value`` if it is a tensor, else raise ``TypeError``."""
    if not isinstance(value, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
    return value


def floating(
    name: str, value: object, *, ranks: Sequence[int] | None = None, layout: str, min_dims: int = 0
) -> Tensor:
    """Check that ``value`` is a floating-point tensor of one of ``ranks``.

    Args:
        name: The argument's name, for the message.
        value: The object to check.
        ranks: The allowed numbers of dimensions, or ``None`` for any number
            from ``min_dims`` on.
        layout: The expected shape in the package's letters, for the message,
            for example ``"(B, T, d_in)"``.
        min_dims: The fewest dimensions allowed when ``ranks`` is ``None``.

    Returns:
        ``value``, unchanged.
    """
    x = tensor(name, value)
    if (x.dim() < min_dims) if ranks is None else (x.dim() not in ranks):
        allowed = f"at least {min_dims}-D" if ranks is None else _ranks(ranks)
        raise ValueError(
            f"{name} must have shape {layout} ({allowed}), "
            f"got {x.dim()} dimensions with shape {tuple(x.shape)}"
        )
    if not x.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {x.dtype}")
    return x


def same_size(name: str, x: Tensor, dim: int, other: str, expected: int, what: str) -> None:
    """Raise unless dimension ``dim`` of ``x`` has ``expected`` entries, as ``other``'s does.

    For two arguments that must agree, for example a query and keys on the
    batch size: the message names both and shows both sizes.
    """
    if x.shape[dim] != expected:
        raise ValueError(
            f"{name} must have the same {what} as {other} ({expected}), "
            f"got {x.shape[dim]} (shape {tuple(x.shape)})"
        )


def same_dtype(name: str, x: Tensor, other: str, expected: torch.dtype) -> None:
    """Raise ``TypeError`` unless ``x`` has the dtype of the argument ``other``."""
    if x.dtype != expected:
        raise TypeError(f"{name} must have the dtype of {other}, {expected}, got {x.dtype}")


def last_dim(name: str, x: Tensor, expected: int, what: str) -> None:
    """Raise unless the last dimension of ``x`` is ``expected``."""
    if x.shape[-1] != expected:
        raise ValueError(
            f"{name} must have last dimension {what}={expected}, "
            f"got {x.shape[-1]} (shape {tuple(x.shape)})"
        )


def matches_parameters(name: str, x: Tensor, reference: Tensor) -> None:
    """Raise unless ``x`` has the dtype and device of a layer's parameters."""
    if x.dtype != reference.dtype:
        raise TypeError(
            f"{name} must have the layer's dtype {reference.dtype}, got {x.dtype}; "
            f"convert one of them, for example layer.to({x.dtype})"
        )
    if x.device != reference.device:
        raise ValueError(
            f"{name} must be on the layer's device {reference.device}, got {x.device}; "
            f"move one of them, for example x.to({str(reference.device)!r})"
        )


def context_fits(name: str, x: Tensor, context_length: int) -> None:
    """Raise if ``x`` holds more tokens (dimension -2) than ``context_length``."""
    tokens = x.shape[-2]
    if tokens > context_length:
        raise ValueError(
            f"{name} has {tokens} tokens, more than context_length={context_length}; "
            f"truncate the input or build the layer with a longer context_length"
        )


def mask(name: str, value: object, shape: Sequence[int], what: str) -> Tensor:
    """Check a boolean mask (``True`` = blocked) that must broadcast to ``shape``.

    Args:
        name: The argument's name, for the message.
        value: The object to check.
        shape: The shape the mask is broadcast to.
        what: What has that shape, for the message, for example ``"the scores'"``.

    Returns:
        ``value``, unchanged.
    """
    m = tensor(name, value)
    if m.dtype != torch.bool:
        raise TypeError(f"{name} must have dtype torch.bool (True = blocked), got {m.dtype}")
    trailing = shape[len(shape) - m.dim() :] if m.dim() <= len(shape) else None
    if trailing is None or any(a not in (1, b) for a, b in zip(m.shape, trailing, strict=True)):
        raise ValueError(
            f"{name} must broadcast to {what} shape {tuple(shape)}, got {tuple(m.shape)}"
        )
    return m


def padding_mask(name: str, mask: object, batch: int, tokens: int, device: torch.device) -> Tensor:
    """Check a key padding mask of shape (B, T), dtype bool, True = padding."""
    m = tensor(name, mask)
    if m.dtype != torch.bool:
        raise TypeError(f"{name} must have dtype torch.bool (True = padding), got {m.dtype}")
    if tuple(m.shape) != (batch, tokens):
        raise ValueError(f"{name} must have shape (B, T) = {(batch, tokens)}, got {tuple(m.shape)}")
    if m.device != device:
        raise ValueError(f"{name} must be on device {device}, got {m.device}")
    return m


def viz_extra(function: str) -> None:
    """Raise ``ModuleNotFoundError`` naming the ``viz`` extra when matplotlib is missing."""
    try:
        importlib.import_module("matplotlib")
    except ImportError as error:
        raise ModuleNotFoundError(
            f"{function} draws with matplotlib, which is not installed: "
            'pip install "attention-from-scratch[viz]"'
        ) from error


def compiling() -> bool:
    """Whether ``torch.compile`` (or ``torch.export``) is tracing the caller.

    Checks of shapes and dtypes read Python numbers and cost nothing in a
    compiled graph. Checks of a tensor's *values* need them on the host (a
    device sync, and a graph break under ``fullgraph=True``): callers run
    those only when this is ``False`` and put ``torch._assert_async`` in the
    graph otherwise.
    """
    return is_compiling()


def _ranks(ranks: Sequence[int]) -> str:
    words = [f"{r}-D" for r in ranks]
    return words[0] if len(words) == 1 else " or ".join(words)


def layer_input(
    x: object,
    *,
    d_in: int,
    ranks: Sequence[int],
    layout: str,
    parameter: Tensor,
    context_length: int | None = None,
) -> Tensor:
    """All checks an attention layer makes on its input ``x``, in one call."""
    t = floating("x", x, ranks=ranks, layout=layout)
    last_dim("x", t, d_in, "d_in")
    matches_parameters("x", t, parameter)
    if context_length is not None:
        context_fits("x", t, context_length)
    return t


def generator_on(
    name: str, generator: object, device: torch.device | str
) -> torch.Generator | None:
    """``generator`` if it is None or a ``torch.Generator`` that can draw on ``device``.

    A generator draws only on its own kind of device; PyTorch's error for a
    CPU generator and a CUDA tensor names neither argument.
    """
    if generator is None:
        return None
    if not isinstance(generator, torch.Generator):
        raise TypeError(f"{name} must be a torch.Generator or None, got {type(generator).__name__}")
    where = torch.device(device)
    if generator.device.type != where.type:
        raise ValueError(
            f"{name} is on {generator.device.type} but draws for a tensor on {where}: "
            f"make it there, torch.Generator(device={where.type!r})"
        )
    return generator
