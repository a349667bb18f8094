"""Causal self-attention with dropout (chapters 5 to 7): the third rung.

New relative to :class:`attention.SelfAttentionV2`:

* a **causal mask**: token i may not attend to any token j > i. The mask is
  a buffer (``register_buffer``): it follows ``.to(device)`` and is never
  trained. Scores above the diagonal become ``-inf`` before the softmax, so
  their weights are exactly 0. It is registered with ``persistent=False``,
  so ``state_dict`` leaves it out: it is rebuilt from ``context_length``,
  and a checkpoint without it stays small and loads into a layer of any
  ``context_length``. Checkpoints saved while it was persistent still load;
  their ``"mask"`` entry is ignored.
* **dropout** on the attention weights during training (never in eval mode).
* **batches**: the input is (B, T, d_in), so keys are transposed with
  ``keys.transpose(1, 2)`` rather than ``.T``.
"""

from __future__ import annotations

from typing import Any, Literal, overload

import torch
from torch import Tensor, nn

from attention import _checks
from attention.functional import causal_mask, masked_softmax

_LAYOUT = "(B, T, d_in)"


def blocked_positions(
    mask: Tensor | None, num_tokens: int, padding_mask: Tensor | None, x: Tensor
) -> Tensor:
    """Combine a layer's causal-mask buffer with an optional key padding mask.

    Args:
        mask: The layer's (context_length, context_length) buffer, 1 above the
            diagonal, or ``None`` for a layer that keeps no buffer (the causal
            mask is then built for these T tokens).
        num_tokens: T, the current number of tokens (the buffer is sliced to it).
        padding_mask: (B, T) bool, ``True`` where a token is padding, or ``None``.
        x: The layer's input, (B, T, d_in), for the batch size and device.

    Returns:
        Boolean mask, ``True`` = blocked: (T, T) without padding, else (B, T, T).
    """
    if mask is None:
        causal = causal_mask(num_tokens, device=x.device)  # (T, T)
    else:
        causal = mask[:num_tokens, :num_tokens].bool()  # (T, T): only the corner converted
    if padding_mask is None:
        return causal
    pad = _checks.padding_mask("padding_mask", padding_mask, x.shape[0], num_tokens, x.device)
    return causal | pad[:, None, :]  # (T, T) | (B, 1, T) -> (B, T, T)


def _ignore_saved_mask(
    module: nn.Module, state_dict: dict[str, Any], prefix: str, *args: object
) -> None:
    """Load hook: drop the ``mask`` entry of checkpoints saved while it was persistent.

    The layer builds its own mask from ``context_length``; the saved copy may
    even have another size.
    """
    state_dict.pop(prefix + "mask", None)


class CausalAttention(nn.Module):
    """One head of causal, scaled dot-product self-attention with dropout.

    ``dropout(masked_softmax(Q K^T / sqrt(d_out))) V`` with the causal mask.

    Args:
        d_in: Width of each input token.
        d_out: Width of queries, keys, values and the output.
        context_length: The longest sequence the layer accepts (the size of
            its mask buffer).
        dropout: Probability of zeroing each attention weight in training,
            in [0, 1). Survivors are scaled by 1 / (1 - dropout).
        qkv_bias: Give the three projections a bias. Default: ``False``.

    Attributes:
        W_query: ``nn.Linear(d_in, d_out)``.
        W_key: Likewise, created after ``W_query``.
        W_value: Likewise, created after ``W_key``.
        dropout: The ``nn.Dropout`` applied to the weights.
        mask: Buffer (context_length, context_length), 1.0 above the diagonal;
            not saved in ``state_dict`` (``persistent=False``).

    Example:
        >>> import torch
        >>> from attention import CausalAttention, toy_inputs
        >>> _ = torch.manual_seed(123)
        >>> batch = torch.stack((toy_inputs(), toy_inputs()))
        >>> CausalAttention(3, 2, 6, 0.0)(batch).shape
        torch.Size([2, 6, 2])
    """

    mask: Tensor

    def __init__(
        self, d_in: int, d_out: int, context_length: int, dropout: float, qkv_bias: bool = False
    ) -> None:
        super().__init__()
        self.d_in = _checks.positive_int("d_in", d_in)
        self.d_out = _checks.positive_int("d_out", d_out)
        self.context_length = _checks.positive_int("context_length", context_length)
        p = _checks.probability("dropout", dropout)
        _checks.flag("qkv_bias", qkv_bias)
        self.W_query = nn.Linear(d_in, d_out, bias=qkv_bias)
        self.W_key = nn.Linear(d_in, d_out, bias=qkv_bias)
        self.W_value = nn.Linear(d_in, d_out, bias=qkv_bias)
        self.dropout = nn.Dropout(p)  # new
        self.register_buffer(  # new
            "mask",
            torch.triu(torch.ones(context_length, context_length), diagonal=1),
            persistent=False,  # rebuilt from context_length, so never saved
        )
        self.register_load_state_dict_pre_hook(_ignore_saved_mask)  # type: ignore[no-untyped-call]

    @overload
    def forward(
        self,
        x: Tensor,
        *,
        padding_mask: Tensor | None = None,
        return_weights: Literal[False] = False,
    ) -> Tensor: ...
    @overload
    def forward(
        self, x: Tensor, *, padding_mask: Tensor | None = None, return_weights: Literal[True]
    ) -> tuple[Tensor, Tensor]: ...
    @overload
    def forward(
        self, x: Tensor, *, padding_mask: Tensor | None = None, return_weights: bool
    ) -> Tensor | tuple[Tensor, Tensor]: ...
    def forward(
        self, x: Tensor, *, padding_mask: Tensor | None = None, return_weights: bool = False
    ) -> Tensor | tuple[Tensor, Tensor]:
        """Attend each token to itself and the tokens before it.

        Args:
            x: Tokens, shape (B, T, d_in) with T <= context_length.
            padding_mask: Optional (B, T) bool, ``True`` where a token is
                padding: no query attends to it. A query that can see only
                padding gets all-zero weights and a zero context vector.
            return_weights: Also return the attention weights (after
                dropout). Default: ``False``.

        Returns:
            Context vectors (B, T, d_out); with ``return_weights=True`` the
            pair ``(context, weights)``, weights of shape (B, T, T).
        """
        _checks.flag("return_weights", return_weights)
        x = _checks.layer_input(
            x,
            d_in=self.d_in,
            ranks=(3,),
            layout=_LAYOUT,
            parameter=self.W_query.weight,
            context_length=self.context_length,
        )
        num_tokens = x.shape[1]
        keys = self.W_key(x)  # (B, T, d_in) -> (B, T, d_out)
        queries = self.W_query(x)  # (B, T, d_out)
        values = self.W_value(x)  # (B, T, d_out)
        scores = queries @ keys.transpose(1, 2)  # (B, T, d_out) @ (B, d_out, T) -> (B, T, T)
        blocked = blocked_positions(self.mask, num_tokens, padding_mask, x)  # new
        weights = masked_softmax(scores / keys.shape[-1] ** 0.5, blocked)  # (B, T, T), new
        weights = self.dropout(weights)  # new
        context = weights @ values  # (B, T, T) @ (B, T, d_out) -> (B, T, d_out)
        return (context, weights) if return_weights else context
