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

Two ways of attending more cheaply have keywords here. A **sliding window**
of W keys (``window=W``) lets each query see only the W most recent tokens,
itself included, so query t (counting from 1) sees ``min(t, W)`` keys and a
KV cache never holds more than W tokens. **Grouped-query attention** keeps
H query heads but only ``n_kv_heads`` key/value heads, each shared by
``H / n_kv_heads`` query heads; ``n_kv_heads = H`` is ordinary multi-head
attention and ``n_kv_heads = 1`` is multi-query attention. It shrinks the KV
cache, not the multiply-adds: every query head still scores every key.

:mod:`attention.memory` measures instead of computing.
"""

from __future__ import annotations

from attention import _checks

__all__ = [
    "attended_pairs",
    "attention_layer_macs",
    "attention_macs",
    "attention_macs_per_token",
    "crossover_context_length",
    "generation_step_macs",
    "keys_per_query",
    "kv_cache_bytes",
    "linear_macs_per_token",
    "score_matrix_bytes",
    "score_matrix_entries",
]


def _window(window: int | None) -> int | None:
    """Return ``window`` if it is ``None`` or a positive int, else raise."""
    return None if window is None else _checks.positive_int("window", window)


def keys_per_query(position: int, *, window: int | None = None) -> int:
    """Keys the query at ``position`` attends to under the causal mask.

    The query at position t (counting from 1) sees keys 1 .. t: ``t`` keys.
    With a sliding window of W it sees only the W most recent, itself
    included: ``min(t, W)``. A window at least as long as the sequence
    changes nothing.

    Args:
        position: t, the query's position, counting from 1 (the newest of t
            tokens).
        window: W, the number of most recent keys a query may see, or
            ``None`` for full causal attention. Default: ``None``.

    Returns:
        The number of keys, an int.

    Example:
        >>> keys_per_query(10), keys_per_query(10, window=4)
        (10, 4)
    """
    t = _checks.positive_int("position", position)
    w = _window(window)
    return t if w is None else min(t, w)


def attended_pairs(context_length: int, *, window: int | None = None) -> int:
    """(Query, key) pairs that causal attention over T tokens actually scores.

    The entries of the (T, T) score matrix that the causal mask keeps, the
    sum of :func:`keys_per_query` over t = 1 .. T: ``T (T + 1) / 2`` without a
    window, about half of ``T^2``; with a window of W < T,
    ``W (W + 1) / 2 + (T - W) W``, which grows like ``T W``, linearly in T.

    Args:
        context_length: T, the number of tokens.
        window: W, the sliding window, or ``None`` for full causal attention.
            Default: ``None``.

    Returns:
        The number of pairs, an int.

    Example:
        >>> attended_pairs(6), attended_pairs(6, window=2)
        (21, 11)
    """
    t = _checks.positive_int("context_length", context_length)
    w = _window(window)
    if w is None or w >= t:
        return t * (t + 1) // 2
    return w * (w + 1) // 2 + (t - w) * w


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


def attention_macs_per_token(
    d_model: int, context_length: int, *, window: int | None = None
) -> int:
    """Multiply-adds of one layer's attention for one token that sees T tokens.

    ``2 T d``: its scores against T keys (``T d``, all heads together) and the
    weighted sum of T values (``T d``). The number of heads does not matter,
    nor does the number of key/value heads: every query head scores every key
    it sees. With a sliding window of W the token sees ``min(T, W)`` keys,
    so the cost stops growing at ``2 W d``.

    Args:
        d_model: d, the model width C.
        context_length: T, the number of tokens, the query being the newest.
        window: W, the sliding window, or ``None`` for full attention over all
            T tokens. Default: ``None``.

    Returns:
        Multiply-adds per token and layer, an int.

    Example:
        >>> attention_macs_per_token(768, 1024)
        1572864
        >>> attention_macs_per_token(768, 1024, window=256)
        393216
    """
    d = _checks.positive_int("d_model", d_model)
    t = _checks.positive_int("context_length", context_length)
    return 2 * keys_per_query(t, window=window) * d


def attention_macs(
    *,
    batch_size: int,
    context_length: int,
    d_model: int,
    causal: bool,
    window: int | None = None,
) -> int:
    """Multiply-adds of attention itself over whole sequences: scores and weighted sums.

    Each query costs :func:`attention_macs_per_token` for the keys it sees:
    all T without a mask, so ``2 T^2 d`` per sequence; under the causal mask
    query t sees t keys (t = 1 .. T), so ``T (T + 1) d``; with a sliding
    window it sees ``min(t, W)``, so ``2 d`` times :func:`attended_pairs`.
    This is the work the maths needs; an implementation that computes the
    masked scores anyway does more. The projections are not included.

    Args:
        batch_size: B, the number of sequences.
        context_length: T, the number of tokens in each.
        d_model: d, the model width C (all heads together, H x D).
        causal: Count only the (query, key) pairs the causal mask keeps.
        window: W, a sliding window of the W most recent keys, or ``None``
            for none. Only with ``causal=True``. Default: ``None``.

    Returns:
        Multiply-adds for the batch, an int.

    Raises:
        ValueError: If ``window`` is given with ``causal=False``.

    Example:
        >>> attention_macs(batch_size=1, context_length=3, d_model=2, causal=True)
        24
        >>> attention_macs(batch_size=1, context_length=3, d_model=2, causal=True, window=1)
        12
    """
    b = _checks.positive_int("batch_size", batch_size)
    t = _checks.positive_int("context_length", context_length)
    d = _checks.positive_int("d_model", d_model)
    w = _window(window)
    if _checks.flag("causal", causal):
        return b * 2 * attended_pairs(t, window=w) * d
    if w is not None:
        raise ValueError(
            f"window={w} needs causal=True: a sliding window keeps each query's "
            f"W most recent keys, which only the causal order defines"
        )
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
    n_heads: int | None = None,
    n_kv_heads: int | None = None,
    window: int | None = None,
) -> int:
    """Bytes of a KV cache holding every layer's keys and values.

    ``2 * n_layers * B * T * d * dtype_bytes``: a key and a value vector of
    width d (all heads) per token, per layer, per sequence.

    With ``n_heads`` H and ``n_kv_heads`` H_kv the key and value vectors are
    ``H_kv * D`` wide, D = d / H the head width: grouped-query attention
    caches H / H_kv times less than multi-head attention (H_kv = H), and
    multi-query attention (H_kv = 1) H times less. With a sliding window of
    W only the last ``min(T, W)`` tokens are kept.

    Args:
        n_layers: Number of transformer layers.
        d_model: d, the model width C.
        context_length: T, the number of tokens generated so far.
        batch_size: B, the number of sequences. Default: 1.
        dtype_bytes: Bytes per number. Default: 4 (float32).
        n_heads: H, the number of query heads; needed with ``n_kv_heads``
            and must divide ``d_model``. Default: ``None``.
        n_kv_heads: H_kv, the number of key/value heads; must divide
            ``n_heads``. Default: ``None``, one per query head.
        window: W, the sliding window, or ``None`` to keep all T tokens.
            Default: ``None``.

    Returns:
        The size in bytes, an int.

    Raises:
        ValueError: If ``n_kv_heads`` is given without ``n_heads``, if
            ``n_heads`` does not divide ``d_model`` or if ``n_kv_heads`` does
            not divide ``n_heads``.

    Example:
        >>> kv_cache_bytes(n_layers=12, d_model=768, context_length=1024)
        75497472
        >>> kv_cache_bytes(n_layers=12, d_model=768, context_length=1024,
        ...                n_heads=12, n_kv_heads=3)
        18874368
    """
    layers = _checks.positive_int("n_layers", n_layers)
    d = _checks.positive_int("d_model", d_model)
    t = _checks.positive_int("context_length", context_length)
    b = _checks.positive_int("batch_size", batch_size)
    size = _checks.positive_int("dtype_bytes", dtype_bytes)
    width = d  # (H_kv * D), the width of one token's key (and of its value)
    if n_heads is not None:
        h = _checks.positive_int("n_heads", n_heads)
        if d % h != 0:
            raise ValueError(f"d_model={d} must be divisible by n_heads={h}")
        h_kv = h if n_kv_heads is None else _checks.positive_int("n_kv_heads", n_kv_heads)
        if h % h_kv != 0:
            raise ValueError(
                f"n_heads={h} must be divisible by n_kv_heads={h_kv}: each key/value head "
                f"serves n_heads / n_kv_heads query heads"
            )
        width = h_kv * (d // h)
    elif n_kv_heads is not None:
        _checks.positive_int("n_kv_heads", n_kv_heads)
        raise ValueError(
            f"n_kv_heads={n_kv_heads} needs n_heads, the number of query heads, "
            f"to know the head width d_model / n_heads"
        )
    cached = keys_per_query(t, window=window)
    return 2 * layers * b * cached * width * size


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
