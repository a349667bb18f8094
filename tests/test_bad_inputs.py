"""Bad input that used to escape as a raw torch error now names its argument.

And the checks that read values stay out of a compiled graph: GPTModel
compiles with fullgraph=True, its id range check skipped while tracing.
"""

from __future__ import annotations

import pytest
import torch

from attention import MultiHeadAttention, masked_softmax
from attention.gpt import GELU, GPTConfig, GPTModel, generate_text_simple
from attention.kv_cache import KVCache, LayerKV, cached_attention
from attention.rnn import AdditiveAttention

TINY = GPTConfig(vocab_size=10, context_length=8, emb_dim=8, n_heads=2, n_layers=1)


@pytest.fixture(scope="module")
def model() -> GPTModel:
    torch.manual_seed(0)
    return GPTModel(TINY).eval()


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (
            lambda m: masked_softmax(torch.tensor([1, 2, 3]), None),
            TypeError,
            "scores must be a floating-point",
        ),
        (lambda m: masked_softmax(torch.tensor(1.0), None), ValueError, "scores must have shape"),
        (
            lambda m: m(torch.tensor([[1, 2]], dtype=torch.uint8)),
            TypeError,
            "in_idx must hold integer token ids of dtype torch.long or torch.int.*uint8",
        ),
        (
            lambda m: m(torch.tensor([[1, 2]]), cache={}),
            TypeError,
            "cache must be a KVCache or None, got dict",
        ),
        (
            lambda m: generate_text_simple(m, torch.tensor([[1, 2]]), 3, 20),
            ValueError,
            "context_size must be at most the model's context_length=8, got 20",
        ),
        (
            lambda m: generate_text_simple(m, torch.tensor([[1, 12]]), 3, 8),
            ValueError,
            r"^idx must hold ids in \[0, vocab_size=10\), got values from 1 to 12",
        ),
        (
            lambda m: generate_text_simple(m, torch.tensor([[1.0, 2.0]]), 3, 8),
            TypeError,
            "^idx must hold integer token ids",
        ),
        (
            lambda m: LayerKV().extend(torch.ones(1, 1, 3, 2), torch.ones(1, 1, 4, 2)),
            ValueError,
            r"keys and values must have the same \(B, H, T\), got keys \(1, 1, 3, 2\) "
            r"and values \(1, 1, 4, 2\)",
        ),
        (
            lambda m: LayerKV().extend(torch.ones(3, 2), torch.ones(3, 2)),
            ValueError,
            "keys must have shape",
        ),
        (
            lambda m: LayerKV().extend(
                torch.ones(1, 1, 3, 2, dtype=torch.long), torch.ones(1, 1, 3, 2)
            ),
            TypeError,
            "keys must be a floating-point",
        ),
    ],
)
def test_bad_input_names_the_argument(model, call, error, message) -> None:
    with pytest.raises(error, match=message):
        call(model)


def test_a_cache_refuses_keys_of_another_batch() -> None:
    cache = LayerKV()
    cache.extend(torch.ones(2, 1, 3, 4), torch.ones(2, 1, 3, 4))
    with pytest.raises(ValueError, match=r"keys must match the cached \(B, H, _, D\)"):
        cache.extend(torch.ones(1, 1, 1, 4), torch.ones(1, 1, 1, 4))


def test_an_empty_batch_is_refused_by_name(model) -> None:
    with pytest.raises(
        ValueError, match=r"in_idx must hold at least one sequence .* got shape \(0, 3\)"
    ):
        model(torch.zeros(0, 3, dtype=torch.long))


def test_int32_ids_work_like_int64(model) -> None:
    ids = torch.tensor([[1, 2, 3]])
    # exact: the same embedding rows, gathered by equal indices, then the same operations
    assert torch.equal(model(ids.int()), model(ids))


def test_gelu_takes_any_number_of_dimensions() -> None:
    x = torch.linspace(-3, 3, 2**8).reshape([2] * 8)  # 8-D
    assert torch.allclose(
        GELU()(x), torch.nn.functional.gelu(x, approximate="tanh"), atol=1e-6, rtol=0
    )


def test_gpt_model_compiles_to_one_graph(model) -> None:
    """No host sync and no graph break on the forward pass (the eager backend needs no compiler)."""
    torch._dynamo.reset()
    compiled = torch.compile(model, fullgraph=True, backend="eager")
    ids = torch.tensor([[1, 2, 3, 4]])
    with torch.no_grad():
        assert torch.allclose(compiled(ids), model(ids), atol=1e-6, rtol=0)


def test_the_cache_still_works_through_generation(model) -> None:
    ids = torch.tensor([[1, 2]])
    plain = generate_text_simple(model, ids, 4, 8)
    cached = generate_text_simple(model, ids, 4, 8, use_cache=True)
    assert plain.tolist() == cached.tolist()  # integer ids
    assert isinstance(KVCache(), KVCache)


ADDITIVE = AdditiveAttention(4, 6, 8)
MHA = MultiHeadAttention(4, 4, 8, 0.0, 2).eval()


def _filled_cache() -> LayerKV:
    kv = LayerKV()
    cached_attention(MHA, torch.rand(2, 3, 4), kv)
    return kv


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (
            lambda: ADDITIVE(torch.rand(2, 4), torch.rand(3, 5, 6)),
            ValueError,
            r"keys must have the batch size of query, 2, got 3",
        ),
        (
            lambda: ADDITIVE(torch.rand(2, 4), torch.rand(2, 5, 6), torch.rand(2, 5, 7)),
            ValueError,
            r"projected_keys must be W_h\(keys\), shape \(B, S, A\) = \(2, 5, 8\), got \(2, 5, 7\)",
        ),
        (
            lambda: ADDITIVE(torch.rand(2, 4, dtype=torch.float64), torch.rand(2, 5, 6)),
            TypeError,
            "query must have the layer's dtype torch.float32, got torch.float64",
        ),
        (
            lambda: cached_attention(MHA, torch.rand(3, 4), LayerKV()),
            ValueError,
            "x must have shape",
        ),
        (
            lambda: cached_attention(MHA, torch.rand(1, 3, 5), LayerKV()),
            ValueError,
            "d_in=4, got 5",
        ),
        (
            lambda: cached_attention(MHA, torch.rand(1, 3, 4, dtype=torch.float64), LayerKV()),
            TypeError,
            "x must have the layer's dtype",
        ),
        (
            lambda: cached_attention(MHA, torch.rand(1, 1, 4), _filled_cache()),
            ValueError,
            "x has batch size 1, but the cache holds batch size 2",
        ),
    ],
)
def test_bad_layer_input_names_the_argument(call, error, message) -> None:
    with pytest.raises(error, match=message):
        call()
