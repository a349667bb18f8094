"""What attention costs: multiply-adds and bytes, by formula and by measurement (chapter 13).

Costs are counted in **multiply-adds** (MACs): one multiplication and one
addition, two floating-point operations. A (n, k) @ (k, m) matrix product is
n * k * m MACs. Sizes use the names of a GPT configuration: ``d_model`` is
the model width C, ``context_length`` the number of tokens T, ``dtype_bytes``
the size of one number (4 for float32, 2 for bfloat16).

Per token and per transformer layer:

* the linear layers cost ``12 d^2`` MACs: ``3 d^2`` for the Q, K and V
  projections, ``d^2`` for the output projection and ``8 d^2`` for the
  feed-forward network (d -> 4d -> d);
* attention costs ``2 T d`` MACs: ``T d`` for the scores ``Q K^T`` (all heads
  together) and ``T d`` for the weighted sum of the values.

Attention therefore overtakes the linear layers once ``2 T d > 12 d^2``, that
is once T exceeds ``6 d``.

:mod:`attention.memory` measures instead of computing.
"""

from __future__ import annotations

from attention import _checks

__all__ = [
    "attention_layer_macs",
    "attention_macs",
    "attention_macs_per_token",
    "crossover_context_length",
    "generation_step_macs",
    "kv_cache_bytes",
    "linear_macs_per_token",
    "score_matrix_bytes",
    "score_matrix_entries",
]


def score_matrix_entries(context_length: int) -> int:
    """Entries of one attention score (or weight) matrix: one head, one layer.

    ``T^2``: one score for every (query, key) pair.

    Args:
        context_length: T, the number of tokens.

    Returns:
        The number of entries, an int.

    Example:
        >>> score_matrix_entries(1024)
        1048576
    """
    t = _checks.positive_int("context_length", context_length)
    return t * t


def score_matrix_bytes(context_length: int, *, dtype_bytes: int = 4) -> int:
    """Bytes of one attention score matrix: one head, one layer, one sequence.

    ``T^2 * dtype_bytes``.

    Args:
        context_length: T, the number of tokens.
        dtype_bytes: Bytes per number. Default: 4 (float32).

    Returns:
        The size in bytes, an int.

    Example:
        >>> score_matrix_bytes(1024)
        4194304
    """
    return score_matrix_entries(context_length) * _checks.positive_int("dtype_bytes", dtype_bytes)


def linear_macs_per_token(d_model: int) -> int:
    """Multiply-adds of one layer's linear maps for one token.

    ``12 d^2``: Q, K, V (``3 d^2``), output projection (``d^2``) and the
    feed-forward network d -> 4d -> d (``8 d^2``); biases are ignored. It equals
    the number of weights in those matrices.

    Args:
        d_model: d, the model width C.

    Returns:
        Multiply-adds per token and layer, an int.

    Example:
        >>> linear_macs_per_token(768)
        7077888
    """
    d = _checks.positive_int("d_model", d_model)
    return 12 * d * d


def attention_macs_per_token(d_model: int, context_length: int) -> int:
    """Multiply-adds of one layer's attention for one token that sees T tokens.

    ``2 T d``: its scores against T keys (``T d``, all heads together) and the
    weighted sum of T values (``T d``). The number of heads does not matter.

    Args:
        d_model: d, the model width C.
        context_length: T, the number of tokens the query attends to.

    Returns:
        Multiply-adds per token and layer, an int.

    Example:
        >>> attention_macs_per_token(768, 1024)
        1572864
    """
    d = _checks.positive_int("d_model", d_model)
    t = _checks.positive_int("context_length", context_length)
    return 2 * t * d


def attention_macs(*, batch_size: int, context_length: int, d_model: int, causal: bool) -> int:
    """Multiply-adds of attention itself over whole sequences: scores and weighted sums.

    Each query costs :func:`attention_macs_per_token` for the keys it sees:
    all T without a mask, so ``2 T^2 d`` per sequence; under the causal mask
    query t sees t keys (t = 1 .. T), so ``T (T + 1) d``. This is the work
    the maths needs; an implementation that computes the masked scores
    anyway does more. The projections are not included.

    Args:
        batch_size: B, the number of sequences.
        context_length: T, the number of tokens in each.
        d_model: d, the model width C (all heads together, H x D).
        causal: Count only the (query, key) pairs the causal mask keeps.

    Returns:
        Multiply-adds for the batch, an int.

    Example:
        >>> attention_macs(batch_size=1, context_length=3, d_model=2, causal=True)
        24
    """
    b = _checks.positive_int("batch_size", batch_size)
    t = _checks.positive_int("context_length", context_length)
    d = _checks.positive_int("d_model", d_model)
    if _checks.flag("causal", causal):
        return b * t * (t + 1) * d
    return b * t * attention_macs_per_token(d, t)


def attention_layer_macs(
    *, batch_size: int, context_length: int, d_model: int, causal: bool
) -> int:
    """Multiply-adds of one multi-head attention layer's forward pass (d -> d).

    :func:`attention_macs` plus the four projections, Q, K, V and output:
    ``4 d^2`` per token (biases ignored), ``4 B T d^2`` in all.

    Args:
        batch_size: B, the number of sequences.
        context_length: T, the number of tokens in each.
        d_model: d, the model width C, the layer's input and output width.
        causal: Count only the (query, key) pairs the causal mask keeps.

    Returns:
        Multiply-adds for the batch, an int.

    Example:
        >>> attention_layer_macs(batch_size=1, context_length=3, d_model=2, causal=True)
        72
    """
    attention = attention_macs(
        batch_size=batch_size, context_length=context_length, d_model=d_model, causal=causal
    )
    return attention + 4 * batch_size * context_length * d_model * d_model


def crossover_context_length(d_model: int) -> int:
    """Context length at which attention costs as much as the linear layers.

    ``T = 6 d``, the solution of ``2 T d = 12 d^2``; for longer contexts
    attention dominates.

    Args:
        d_model: d, the model width C.

    Returns:
        T at the crossover, an int.

    Example:
        >>> crossover_context_length(768)
        4608
    """
    return 6 * _checks.positive_int("d_model", d_model)


def kv_cache_bytes(
    *,
    n_layers: int,
    d_model: int,
    context_length: int,
    batch_size: int = 1,
    dtype_bytes: int = 4,
) -> int:
    """Bytes of a KV cache holding every layer's keys and values.

    ``2 * n_layers * B * T * d * dtype_bytes``: a key and a value vector of
    width d (all heads) per token, per layer, per sequence.

    Args:
        n_layers: Number of transformer layers.
        d_model: d, the model width C.
        context_length: T, the number of cached tokens.
        batch_size: B, the number of sequences. Default: 1.
        dtype_bytes: Bytes per number. Default: 4 (float32).

    Returns:
        The size in bytes, an int.

    Example:
        >>> kv_cache_bytes(n_layers=12, d_model=768, context_length=1024)
        75497472
    """
    layers = _checks.positive_int("n_layers", n_layers)
    d = _checks.positive_int("d_model", d_model)
    t = _checks.positive_int("context_length", context_length)
    b = _checks.positive_int("batch_size", batch_size)
    return 2 * layers * b * t * d * _checks.positive_int("dtype_bytes", dtype_bytes)


def generation_step_macs(
    *,
    n_layers: int,
    d_model: int,
    vocab_size: int,
    context_length: int,
    use_cache: bool,
) -> int:
    """Multiply-adds to produce the next token when T tokens are already there.

    Without a cache the model reruns on all T tokens:
    ``n_layers * (T * 12 d^2 + 2 d * T (T + 1) / 2) + T d V`` (causal: token t
    sees t keys; the output head runs on every token, as in the book's loop).
    With a cache only the newest token runs:
    ``n_layers * (12 d^2 + 2 T d) + d V``.

    Args:
        n_layers: Number of transformer layers.
        d_model: d, the model width C.
        vocab_size: V, the size of the vocabulary (output head d -> V).
        context_length: T, the tokens the new token's step processes or sees.
        use_cache: Count the cached step (``True``) or the full rerun.

    Returns:
        Multiply-adds, an int.

    Example:
        >>> generation_step_macs(n_layers=1, d_model=2, vocab_size=3,
        ...                      context_length=4, use_cache=True)
        70
    """
    layers = _checks.positive_int("n_layers", n_layers)
    d = _checks.positive_int("d_model", d_model)
    vocab = _checks.positive_int("vocab_size", vocab_size)
    t = _checks.positive_int("context_length", context_length)
    if _checks.flag("use_cache", use_cache):
        return layers * (12 * d * d + 2 * t * d) + d * vocab
    return layers * (t * 12 * d * d + d * t * (t + 1)) + t * d * vocab
