"""The logit lens: what the residual stream predicts after every layer (chapter 12).

A transformer adds each layer's output to a running vector per position, the
residual stream, and turns the final vector into next-token logits with one
linear map, the unembedding. The logit lens (nostalgebraist, 2020) applies
that same map to the stream *before* the last layer: after the embedding,
after layer 0, after layer 1, and so on. Read this way, every layer's stream
is a next-token guess, and one can watch at which layer a prediction appears.

Two kinds of model are supported:

* :class:`attention.induction.AttentionOnlyTransformer` (chapter 12), whose
  logits are ``out_head(h_N)``: the lens of layer n is ``out_head(h_n)``.
* :class:`attention.gpt.GPTModel`, whose logits are
  ``out_head(final_norm(h_N))``: the lens of layer n is
  ``out_head(final_norm(h_n))``. Applying the final norm to every layer, as
  the logit lens is usually applied, puts each stream on the scale the
  unembedding was trained on.

Either way the last entry of the lens is the model's own output. The streams
are read with forward pre-hooks while the model's own ``forward`` runs, so
the model checks its input as usual and nothing is recomputed differently.
Put a model with dropout in eval mode first (``model.eval()``): the lens
records whatever the forward pass computes.

Shape letters, besides the package's: ``N`` the number of layers (blocks),
``V`` the vocabulary size.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from attention.gpt import GPTModel
from attention.induction import AttentionOnlyTransformer

Model = AttentionOnlyTransformer | GPTModel


def _parts(model: object) -> tuple[list[nn.Module], nn.Module, Callable[[Tensor], Tensor]]:
    """The layers, the module that reads the final stream, and the unembedding."""
    if isinstance(model, AttentionOnlyTransformer):
        return list(model.layers), model.out_head, model.out_head
    if isinstance(model, GPTModel):
        norm, head = model.final_norm, model.out_head
        return list(model.trf_blocks), norm, lambda h: head(norm(h))
    raise TypeError(
        f"model must be an AttentionOnlyTransformer or a GPTModel, got {type(model).__name__}"
    )


def _streams(model: Model, tokens: Tensor) -> tuple[Tensor, Tensor]:
    """Run ``model`` once; return its residual streams (N+1, B, T, C) and logits (B, T, V)."""
    layers, final, _ = _parts(model)
    seen: list[Tensor] = []

    def record(module: nn.Module, inputs: tuple[Tensor, ...]) -> None:
        seen.append(inputs[0])  # (B, T, C): the stream this module reads

    handles = [m.register_forward_pre_hook(record) for m in [*layers, final]]
    try:
        with torch.no_grad():
            logits: Tensor = model(tokens)  # (B, T, V); the model checks `tokens`
    finally:
        for handle in handles:
            handle.remove()
    return torch.stack(seen), logits  # N+1 x (B, T, C) -> (N+1, B, T, C)


def residual_stream(model: Model, tokens: Tensor) -> Tensor:
    """The residual stream after the embedding and after every layer.

    Entry 0 is ``h_0``, the token plus position embedding (after the
    embedding dropout of a :class:`attention.gpt.GPTModel`); entry n + 1 is
    ``h_{n+1}``, the stream after layer (block) n. A GPT's final norm is not
    applied here; :func:`logit_lens` applies it.

    Args:
        model: An :class:`attention.induction.AttentionOnlyTransformer` or an
            :class:`attention.gpt.GPTModel`.
        tokens: Token ids of shape (B, T), as the model's ``forward`` takes
            them (it checks them).

    Returns:
        Tensor of shape (N+1, B, T, C), computed without gradients.

    Example:
        >>> from attention.induction import InductionConfig
        >>> model = AttentionOnlyTransformer(InductionConfig(vocab_size=8, context_length=6))
        >>> residual_stream(model, torch.zeros(1, 4, dtype=torch.long)).shape
        torch.Size([3, 1, 4, 32])
    """
    return _streams(model, tokens)[0]


def logit_lens(model: Model, tokens: Tensor) -> Tensor:
    """Next-token logits read off the residual stream after every layer.

    ``lens[n] = out_head(h_n)`` for an
    :class:`attention.induction.AttentionOnlyTransformer`,
    ``out_head(final_norm(h_n))`` for an :class:`attention.gpt.GPTModel`,
    with ``h_n`` from :func:`residual_stream`. ``lens[0]`` is what the
    embedding alone predicts, ``lens[N]`` the model's own logits.

    Args:
        model: An :class:`attention.induction.AttentionOnlyTransformer` or an
            :class:`attention.gpt.GPTModel`.
        tokens: Token ids of shape (B, T), as the model's ``forward`` takes
            them (it checks them).

    Returns:
        Logits of shape (N+1, B, T, V), computed without gradients.

    Example:
        >>> from attention.induction import InductionConfig
        >>> model = AttentionOnlyTransformer(InductionConfig(vocab_size=8, context_length=6))
        >>> x = torch.tensor([[1, 2, 3, 1]])
        >>> lens = logit_lens(model, x)
        >>> lens.shape
        torch.Size([3, 1, 4, 8])
        >>> torch.allclose(lens[-1], model(x), atol=1e-6)
        True
    """
    streams, _ = _streams(model, tokens)  # (N+1, B, T, C)
    _, _, unembed = _parts(model)
    with torch.no_grad():
        return unembed(streams)  # (N+1, B, T, C) -> (N+1, B, T, V)


def target_rank(logits: Tensor, targets: Tensor) -> Tensor:
    """The rank of each target among the logits: 0 if it has the largest logit.

    ``rank = #{v : logits[..., v] > logits[..., target]}``; ties count in the
    target's favour.

    Args:
        logits: Logits of shape (..., V), for example from :func:`logit_lens`.
        targets: Token ids of shape (...), int64, each in [0, V).

    Returns:
        Ranks, int64 of shape (...).

    Example:
        >>> target_rank(torch.tensor([[0.1, 2.0, -1.0]]), torch.tensor([0])).tolist()
        [1]
    """
    if not isinstance(logits, Tensor) or not logits.is_floating_point() or logits.dim() < 1:
        raise TypeError(
            f"logits must be a floating-point tensor of shape (..., V), got {_describe(logits)}"
        )
    if not isinstance(targets, Tensor) or targets.dtype != torch.int64:
        raise TypeError(f"targets must be an int64 tensor of token ids, got {_describe(targets)}")
    if targets.shape != logits.shape[:-1]:
        raise ValueError(
            f"targets must have shape {tuple(logits.shape[:-1])} (the logits' without V), "
            f"got {tuple(targets.shape)}"
        )
    v = logits.shape[-1]
    if targets.numel() and (targets.min() < 0 or targets.max() >= v):
        raise ValueError(
            f"targets must hold ids 0 to {v - 1}, "
            f"got values {targets.min().item()} to {targets.max().item()}"
        )
    chosen = logits.gather(-1, targets[..., None])  # (..., 1)
    return (logits > chosen).sum(dim=-1)  # (..., V) -> (...)


def _describe(value: object) -> str:
    if isinstance(value, Tensor):
        return f"dtype {value.dtype} and shape {tuple(value.shape)}"
    return type(value).__name__
