"""Bad input that used to escape as a raw torch error, or pass silently, now names the argument.

Each case was found by calling a public function or layer with the wrong
batch size, width, dtype, rank or type of object: before, torch raised a
``RuntimeError`` about matrix sizes, or Python an ``AttributeError``; now the
package raises ``TypeError`` (wrong kind of thing) or ``ValueError`` (wrong
value or shape) with the argument's name.
"""

from __future__ import annotations

import math

import pytest
import torch

from attention import masked_softmax
from attention.dropout import dropout_attention, inverted_dropout, keep_mask
from attention.gpt import (
    GELU,
    FeedForward,
    GPTConfig,
    GPTModel,
    LayerNorm,
    TransformerBlock,
    generate_text_simple,
)
from attention.kv_cache import KVCache, LayerKV, cached_attention
from attention.rnn import AdditiveAttention

TINY = GPTConfig(vocab_size=10, context_length=8, emb_dim=8, n_heads=2, n_layers=1, drop_rate=0.0)


def _model() -> GPTModel:
    torch.manual_seed(0)
    return GPTModel(TINY).eval()


# -- AdditiveAttention ------------------------------------------------------------

# AdditiveAttention(query_size=4, key_size=6, attention_size=8)
ADDITIVE = [
    (
        "query/key batch mismatch",
        (torch.rand(2, 4), torch.rand(3, 5, 6), None),
        ValueError,
        r"keys must have the same batch size B as query \(2\), got 3",
    ),
    (
        "projected_keys of the wrong width",
        (torch.rand(2, 4), torch.rand(2, 5, 6), torch.rand(2, 5, 7)),
        ValueError,
        r"projected_keys must have shape \(B, S, A\) = \(2, 5, 8\).*got \(2, 5, 7\)",
    ),
    (
        "projected_keys for other keys",
        (torch.rand(2, 4), torch.rand(2, 5, 6), torch.rand(2, 4, 8)),
        ValueError,
        r"projected_keys must have shape \(B, S, A\) = \(2, 5, 8\)",
    ),
    (
        "projected_keys not a tensor",
        (torch.rand(2, 4), torch.rand(2, 5, 6), [[0.0]]),
        TypeError,
        r"projected_keys must be a torch.Tensor, got list",
    ),
    (
        "float64 inputs into a float32 layer",
        (torch.rand(2, 4).double(), torch.rand(2, 5, 6).double(), None),
        TypeError,
        r"query must have the layer's dtype torch.float32, got torch.float64",
    ),
    (
        "float64 keys only",
        (torch.rand(2, 4), torch.rand(2, 5, 6).double(), None),
        TypeError,
        r"keys must have the layer's dtype torch.float32, got torch.float64",
    ),
    (
        "float64 projected_keys",
        (torch.rand(2, 4), torch.rand(2, 5, 6), torch.rand(2, 5, 8).double()),
        TypeError,
        r"projected_keys must have the layer's dtype torch.float32, got torch.float64",
    ),
    (
        "no encoder states",
        (torch.rand(2, 4), torch.rand(2, 0, 6), None),
        ValueError,
        r"keys must hold at least one state \(S >= 1\), got shape \(2, 0, 6\)",
    ),
]


@pytest.mark.parametrize(
    ("args", "error", "message"), [c[1:] for c in ADDITIVE], ids=[c[0] for c in ADDITIVE]
)
def test_additive_attention(args, error, message):
    with pytest.raises(error, match=message):
        AdditiveAttention(4, 6, 8)(*args)


# -- cached_attention and LayerKV -----------------------------------------------


def _full_cache() -> LayerKV:
    kv = LayerKV()
    kv.extend(torch.rand(1, 2, 3, 4), torch.rand(1, 2, 3, 4))  # (B, H, S, D) = (1, 2, 3, 4)
    return kv


CACHED = [
    ("2-D x", {"x": torch.rand(3, 8)}, ValueError, r"x must have shape \(B, T, C\) \(3-D\)"),
    ("wrong width", {"x": torch.rand(1, 3, 7)}, ValueError, r"x must have last dimension d_in=8"),
    (
        "float64 x",
        {"x": torch.rand(1, 3, 8).double()},
        TypeError,
        r"x must have the layer's dtype torch.float32, got torch.float64",
    ),
    (
        "integer x",
        {"x": torch.ones(1, 3, 8, dtype=torch.int64)},
        TypeError,
        r"x must be a floating-point tensor, got dtype torch.int64",
    ),
    (
        "batch size changes mid-cache",
        {"x": torch.rand(2, 1, 8), "kv": _full_cache},
        ValueError,
        r"x must have the same batch size B as the cache \(1\), got 2",
    ),
    ("att not a layer", {"att": "att"}, TypeError, r"att must be a MultiHeadAttention, got str"),
    ("kv not a LayerKV", {"kv": None}, TypeError, r"kv must be a LayerKV, got NoneType"),
    ("kv a whole KVCache", {"kv": KVCache}, TypeError, r"kv must be a LayerKV, got KVCache"),
]


@pytest.mark.parametrize(
    ("kwargs", "error", "message"), [c[1:] for c in CACHED], ids=[c[0] for c in CACHED]
)
def test_cached_attention(kwargs, error, message):
    model = _model()
    args = {"att": model.trf_blocks[0].att, "x": torch.rand(1, 3, 8), "kv": LayerKV, **kwargs}
    if callable(args["kv"]):
        args["kv"] = args["kv"]()
    with pytest.raises(error, match=message):
        cached_attention(**args)


def test_transformer_block_checks_its_cache():
    block = TransformerBlock(TINY)
    with pytest.raises(TypeError, match=r"kv must be a LayerKV, got dict"):
        block(torch.rand(1, 3, 8), kv={})


EXTEND = [
    (
        "3 keys and 4 values",
        (LayerKV, torch.rand(1, 2, 3, 4), torch.rand(1, 2, 4, 4)),
        ValueError,
        r"keys and values must have the same shape .*got \(1, 2, 3, 4\) and \(1, 2, 4, 4\)",
    ),
    (
        "keys not a tensor",
        (LayerKV, [0.0], torch.rand(1, 2, 3, 4)),
        TypeError,
        r"keys must be a torch.Tensor, got list",
    ),
    (
        "3-D values",
        (LayerKV, torch.rand(1, 2, 3, 4), torch.rand(2, 3, 4)),
        ValueError,
        r"values must have shape \(B, H, T, D\) \(4-D\), got 3 dimensions",
    ),
    (
        "values of another dtype",
        (LayerKV, torch.rand(1, 2, 3, 4), torch.rand(1, 2, 3, 4).double()),
        TypeError,
        r"values must have the dtype of keys, torch.float32, got torch.float64",
    ),
    (
        "another batch size than the cache",
        (_full_cache, torch.rand(2, 2, 1, 4), torch.rand(2, 2, 1, 4)),
        ValueError,
        r"keys must have the same batch size B as the cached keys \(1\), got 2",
    ),
    (
        "another number of heads",
        (_full_cache, torch.rand(1, 3, 1, 4), torch.rand(1, 3, 1, 4)),
        ValueError,
        r"keys must have the same number of heads H as the cached keys \(2\), got 3",
    ),
    (
        "another head width",
        (_full_cache, torch.rand(1, 2, 1, 5), torch.rand(1, 2, 1, 5)),
        ValueError,
        r"keys must have the same head width D as the cached keys \(4\), got 5",
    ),
    (
        "another dtype than the cache",
        (_full_cache, torch.rand(1, 2, 1, 4).double(), torch.rand(1, 2, 1, 4).double()),
        TypeError,
        r"keys must have the dtype of the cached keys, torch.float32, got torch.float64",
    ),
]


@pytest.mark.parametrize(
    ("args", "error", "message"), [c[1:] for c in EXTEND], ids=[c[0] for c in EXTEND]
)
def test_layer_kv_extend(args, error, message):
    make, keys, values = args
    kv = make()
    before = (kv.keys, kv.values)
    with pytest.raises(error, match=message):
        kv.extend(keys, values)
    # a refused extend changes nothing
    assert kv.keys is before[0]
    assert kv.values is before[1]


# -- masked_softmax ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("scores", "blocked", "error", "message"),
    [
        (torch.ones(2, 2, dtype=torch.int64), None, TypeError, r"scores must be a floating-point"),
        (
            torch.ones(2, 2, dtype=torch.int64),
            torch.zeros(2, 2, dtype=torch.bool),
            TypeError,
            r"scores must be a floating-point tensor, got dtype torch.int64",
        ),
        (torch.tensor(1.0), None, ValueError, r"scores must have shape .*got 0 dimensions"),
        (torch.tensor(1.0), torch.tensor(True), ValueError, r"scores must have shape .*\(\)"),
    ],
    ids=["integer", "integer, with a mask", "0-d", "0-d, with a mask"],
)
def test_masked_softmax(scores, blocked, error, message):
    with pytest.raises(error, match=message):
        masked_softmax(scores, blocked)


# -- GPTModel and generation -------------------------------------------------------


@pytest.mark.parametrize(
    ("idx", "error", "message"),
    [
        (torch.zeros(0, 3, dtype=torch.long), ValueError, r"in_idx must hold at least one seq"),
        (torch.zeros(1, 3, dtype=torch.uint8), TypeError, r"in_idx .*got dtype torch.uint8"),
        (torch.zeros(1, 3, dtype=torch.int8), TypeError, r"in_idx .*got dtype torch.int8"),
        (torch.zeros(1, 3, dtype=torch.int16), TypeError, r"in_idx .*with in_idx.long\(\)"),
    ],
    ids=["batch size 0", "uint8", "int8", "int16"],
)
def test_gpt_model_ids(idx, error, message):
    with pytest.raises(error, match=message):
        _model()(idx)


def test_gpt_model_takes_int32_ids():
    model, idx = _model(), torch.tensor([[1, 2, 3]])
    # exact: the same ids pick the same embedding rows, whatever their integer dtype
    assert torch.equal(model(idx.int()), model(idx))


@pytest.mark.parametrize("cache", [{}, [], "cache", LayerKV()])
def test_gpt_model_cache_must_be_a_kv_cache(cache):
    with pytest.raises(TypeError, match=r"cache must be a KVCache or None, got"):
        _model()(torch.tensor([[1, 2]]), cache=cache)


def test_full_cache_says_so():
    model, cache = _model(), KVCache()
    model(torch.zeros(1, TINY.context_length, dtype=torch.long), cache=cache)
    with pytest.raises(ValueError, match=r"the cache already holds context_length=8 tokens"):
        model(torch.tensor([[1]]), cache=cache)


@pytest.mark.parametrize("use_cache", [False, True])
def test_context_size_longer_than_the_model_context(use_cache):
    start = torch.zeros(1, TINY.context_length, dtype=torch.long)
    with pytest.raises(ValueError, match=r"context_size must be at most .*context_length=8, got 9"):
        generate_text_simple(_model(), start, 2, TINY.context_length + 1, use_cache=use_cache)


@pytest.mark.parametrize(
    ("idx", "error", "message"),
    [
        (torch.tensor([[1.0]]), TypeError, r"^idx must hold integer token ids"),
        (torch.tensor([[1, 10]]), ValueError, r"^idx must hold ids in \[0, vocab_size=10\)"),
        (torch.zeros(0, 2, dtype=torch.long), ValueError, r"^idx must hold at least one seq"),
        (torch.zeros(1, 0, dtype=torch.long), ValueError, r"^idx must hold at least one seq"),
        (torch.tensor([[1]], dtype=torch.uint8), TypeError, r"^idx .*got dtype torch.uint8"),
    ],
    ids=["float", "out of range", "batch size 0", "no tokens", "uint8"],
)
def test_generation_names_idx(idx, error, message):
    with pytest.raises(error, match=message):
        generate_text_simple(_model(), idx, 2, TINY.context_length)


def test_generation_checks_idx_for_any_model():
    model = torch.nn.Sequential(torch.nn.Embedding(10, 10))  # (B, T) -> (B, T, V)
    with pytest.raises(TypeError, match=r"^idx must hold integer token ids, got dtype"):
        generate_text_simple(model, torch.tensor([[1.0]]), 1, 4)
    assert generate_text_simple(model, torch.tensor([[1]]), 1, 4).shape == (1, 2)


@pytest.mark.parametrize(
    ("eps", "error"),
    [
        (math.inf, ValueError),
        (math.nan, ValueError),
        (-1e-5, ValueError),
        (0.0, ValueError),
        ("1e-5", TypeError),
        (None, TypeError),
        (True, TypeError),
    ],
)
def test_layer_norm_eps(eps, error):
    with pytest.raises(error, match=r"eps must be a positive number, got"):
        LayerNorm(4, eps=eps)


def test_elementwise_layers_take_any_rank():
    x = torch.rand(1, 1, 1, 1, 1, 1, 1, 2, 4)  # 9-D
    assert GELU()(x).shape == x.shape
    assert GELU()(torch.tensor(1.0)).shape == ()
    assert LayerNorm(4)(x).shape == x.shape
    assert FeedForward(TINY)(torch.rand(1, 1, 1, 1, 1, 1, 1, 2, 8)).shape[-1] == 8


def test_feed_forward_checks_the_dtype():
    with pytest.raises(TypeError, match=r"x must have the layer's dtype torch.float32, got .*64"):
        FeedForward(TINY)(torch.rand(2, 8, dtype=torch.float64))


# -- dropout ------------------------------------------------------------------------


def _qkv(t_k_values: int = 4, dtype: torch.dtype = torch.float32):
    return torch.rand(1, 4, 2), torch.rand(1, 4, 2, dtype=dtype), torch.rand(1, t_k_values, 2)


@pytest.mark.parametrize(
    ("qkv", "placement", "blocked", "error", "message"),
    [
        (
            _qkv(t_k_values=5),
            "weights",
            None,
            ValueError,
            r"values must have the same number of tokens T_k as keys \(4\), got 5",
        ),
        (
            _qkv(dtype=torch.float64),
            "weights",
            None,
            TypeError,
            r"keys must have the dtype of queries, torch.float32, got torch.float64",
        ),
        (
            _qkv(),
            "scores",
            torch.zeros(3, 3, dtype=torch.bool),
            ValueError,
            r"blocked must broadcast to the scores' shape \(1, 4, 4\), got \(3, 3\)",
        ),
    ],
    ids=["values of another length", "keys of another dtype", "mask of the wrong shape"],
)
def test_dropout_attention(qkv, placement, blocked, error, message):
    with pytest.raises(error, match=message):
        dropout_attention(*qkv, p=0.1, placement=placement, training=True, blocked=blocked)


def test_inverted_dropout_needs_floats():
    with pytest.raises(
        TypeError, match=r"x must be a floating-point tensor, got dtype torch.int64"
    ):
        inverted_dropout(torch.ones(3, dtype=torch.int64), 0.5, training=True)


@pytest.mark.parametrize(
    ("shape", "error", "message"),
    [
        ((2, -1), ValueError, r"shape must hold ints >= 0, got \(2, -1\)"),
        ((2, 1.5), TypeError, r"shape must be a tuple of ints, got \(2, 1.5\)"),
        ("ab", TypeError, r"shape must be a tuple of ints, got str"),
        (3, TypeError, r"shape must be a tuple of ints, got int"),
    ],
)
def test_keep_mask_shape(shape, error, message):
    with pytest.raises(error, match=message):
        keep_mask(shape, 0.1)


# -- Found beyond issue 15's list ---------------------------------------------------


def _beyond():
    from attention import context_vector
    from attention.induction import AttentionOnlyTransformer, InductionConfig
    from attention.lookup import hard_lookup, soft_lookup
    from attention.rnn_training import position_accuracy
    from attention.scaling import softmax_stats
    from attention.shortcut import weight_gradient_means

    ids = torch.zeros(1, 3, dtype=torch.long)
    return [
        (
            "soft_lookup without keys",
            lambda: soft_lookup(torch.rand(3), torch.rand(0, 3), torch.rand(0, 2)),
            ValueError,
            r"keys must hold at least one key \(N >= 1\), got shape \(0, 3\)",
        ),
        (
            "hard_lookup without keys",
            lambda: hard_lookup(torch.rand(3), torch.rand(0, 3), torch.rand(0, 2)),
            ValueError,
            r"keys must hold at least one key",
        ),
        (
            "softmax_stats keys of another dtype",
            lambda: softmax_stats(
                torch.rand(4, 3), torch.rand(4, 3).double(), torch.rand(4, 4), scale=True
            ),
            TypeError,
            r"keys must have the dtype of queries, torch.float32, got torch.float64",
        ),
        (
            "softmax_stats upstream of another dtype",
            lambda: softmax_stats(
                torch.rand(4, 3), torch.rand(4, 3), torch.rand(4, 4).double(), scale=True
            ),
            TypeError,
            r"upstream must have the dtype of queries",
        ),
        (
            "context_vector inputs of another dtype",
            lambda: context_vector(torch.rand(6), torch.rand(6, 3).double()),
            TypeError,
            r"inputs must have the dtype of weights, torch.float32, got torch.float64",
        ),
        (
            "AttentionOnlyTransformer float tokens",
            lambda: AttentionOnlyTransformer(InductionConfig())(ids.float()),
            TypeError,
            r"tokens must be an int64 tensor of token ids, got dtype torch.float32",
        ),
        (
            "weight_gradient_means without a model",
            lambda: weight_gradient_means("model", torch.rand(2, 3)),  # type: ignore[arg-type]
            TypeError,
            r"model must be a torch.nn.Module, got str",
        ),
        (
            "position_accuracy without a model",
            lambda: position_accuracy("model", ids, ids),  # type: ignore[arg-type]
            TypeError,
            r"model must be a Seq2Seq, got str",
        ),
    ]


@pytest.mark.parametrize(
    ("call", "error", "message"), [c[1:] for c in _beyond()], ids=[c[0] for c in _beyond()]
)
def test_found_beyond_the_list(call, error, message):
    with pytest.raises(error, match=message):
        call()
