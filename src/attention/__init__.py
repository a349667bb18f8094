"""attention: the attention mechanism of large language models, from scratch.

The package behind the textbook. Every class and function here is shown,
executed and tested in the book; the chapters import them rather than copy
them.

Shape letters, used in every docstring and shape comment:

* ``B``: batch size; ``T``: number of tokens (sequence length);
* ``H``: number of heads; ``D``: width of one head (``head_dim``);
* ``C``: model width, ``C = H x D``;
* ``d_in``, ``d_out``: a layer's input and output widths.

Masks: a boolean mask is ``True`` where attention is **blocked**, as for
``Tensor.masked_fill`` and ``nn.MultiheadAttention``;
``F.scaled_dot_product_attention`` uses the opposite convention.

The ladder of chapter 3 of the book, one rung per class:

* :func:`simple_self_attention` (no trainable weights),
* :class:`SelfAttentionV1` (raw ``nn.Parameter`` matrices),
* :class:`SelfAttentionV2` (``nn.Linear``),
* :class:`CausalAttention` (causal mask and dropout, batches),
* :class:`MultiHeadAttentionWrapper` (stacked heads),
* :class:`MultiHeadAttention` (fused heads and an output projection).
"""

from attention.causal import CausalAttention
from attention.functional import causal_mask, masked_softmax
from attention.multihead import MultiHeadAttention, MultiHeadAttentionWrapper
from attention.self_attention import SelfAttentionV1, SelfAttentionV2
from attention.simple import (
    all_attention_scores,
    attention_scores,
    context_vector,
    normalize_by_sum,
    simple_self_attention,
    softmax_naive,
    softmax_stable,
)
from attention.toy import TOKENS, toy_inputs

__version__ = "0.1.0"

__all__ = [
    "TOKENS",
    "CausalAttention",
    "MultiHeadAttention",
    "MultiHeadAttentionWrapper",
    "SelfAttentionV1",
    "SelfAttentionV2",
    "__version__",
    "all_attention_scores",
    "attention_scores",
    "causal_mask",
    "context_vector",
    "masked_softmax",
    "normalize_by_sum",
    "simple_self_attention",
    "softmax_naive",
    "softmax_stable",
    "toy_inputs",
]
