"""Bad input raises a clear error naming the argument, the expectation and the value."""

from __future__ import annotations

import pytest
import torch

from attention import (
    CausalAttention,
    MultiHeadAttention,
    MultiHeadAttentionWrapper,
    SelfAttentionV1,
    SelfAttentionV2,
    all_attention_scores,
    attention_scores,
    causal_mask,
    context_vector,
    masked_softmax,
    normalize_by_sum,
    simple_self_attention,
    softmax_naive,
    softmax_stable,
    toy_inputs,
)


def _layers():
    return {
        "v1": SelfAttentionV1(3, 2),
        "v2": SelfAttentionV2(3, 2),
        "causal": CausalAttention(3, 2, 6, 0.0),
        "wrapper": MultiHeadAttentionWrapper(3, 2, 6, 0.0, num_heads=2),
        "mha": MultiHeadAttention(3, 4, 6, 0.0, num_heads=2),
        "mha-sdpa": MultiHeadAttention(3, 4, 6, 0.0, num_heads=2, impl="sdpa"),
    }


LAYERS = list(_layers())
BATCHED = ["causal", "wrapper", "mha", "mha-sdpa"]


@pytest.mark.parametrize("name", LAYERS)
def test_wrong_rank(name):
    layer = _layers()[name]
    x = torch.rand(2, 2, 6, 3)
    with pytest.raises(ValueError, match=r"x must have shape .*got 4 dimensions"):
        layer(x)


@pytest.mark.parametrize("name", BATCHED)
def test_unbatched_input_to_a_batched_layer(name):
    with pytest.raises(ValueError, match=r"x must have shape \(B, T, d_in\).*got 2 dimensions"):
        _layers()[name](toy_inputs())


@pytest.mark.parametrize("name", LAYERS)
def test_wrong_last_dimension(name):
    x = torch.rand(2, 6, 5)
    with pytest.raises(ValueError, match=r"x must have last dimension d_in=3, got 5"):
        _layers()[name](x)


@pytest.mark.parametrize("name", LAYERS)
def test_integer_input(name):
    x = torch.ones(2, 6, 3, dtype=torch.int64)
    with pytest.raises(
        TypeError, match=r"x must be a floating-point tensor, got dtype torch.int64"
    ):
        _layers()[name](x)


@pytest.mark.parametrize("name", LAYERS)
def test_not_a_tensor(name):
    with pytest.raises(TypeError, match=r"x must be a torch.Tensor, got list"):
        _layers()[name]([[0.1, 0.2, 0.3]])


@pytest.mark.parametrize("name", LAYERS)
def test_dtype_different_from_the_layer(name):
    x = torch.rand(2, 6, 3, dtype=torch.float64)
    with pytest.raises(TypeError, match=r"x must have the layer's dtype torch.float32"):
        _layers()[name](x)


@pytest.mark.parametrize("name", BATCHED)
def test_more_tokens_than_context_length(name):
    x = torch.rand(1, 7, 3)
    with pytest.raises(ValueError, match=r"x has 7 tokens, more than context_length=6"):
        _layers()[name](x)


@pytest.mark.parametrize("name", LAYERS)
def test_return_weights_must_be_a_bool(name):
    with pytest.raises(TypeError, match=r"return_weights must be a bool, got str"):
        _layers()[name](torch.rand(1, 6, 3), return_weights="yes")


def test_d_out_not_divisible_by_num_heads():
    with pytest.raises(ValueError, match=r"d_out must be divisible by num_heads, got d_out=5"):
        MultiHeadAttention(3, 5, 6, 0.0, num_heads=2)


@pytest.mark.parametrize("dropout", [-0.1, 1.0, 1.5, float("nan")])
@pytest.mark.parametrize(
    "make",
    [
        lambda p: CausalAttention(3, 2, 6, p),
        lambda p: MultiHeadAttentionWrapper(3, 2, 6, p, num_heads=2),
        lambda p: MultiHeadAttention(3, 2, 6, p, num_heads=2),
    ],
)
def test_dropout_outside_unit_interval(make, dropout):
    with pytest.raises(ValueError, match=r"dropout must be in \[0, 1\)"):
        make(dropout)


def test_dropout_of_the_wrong_type():
    with pytest.raises(TypeError, match=r"dropout must be a float in \[0, 1\), got str"):
        CausalAttention(3, 2, 6, "0.1")


@pytest.mark.parametrize("bad", [0, -3, 2.5, True, "4", None])
@pytest.mark.parametrize("argument", ["d_in", "d_out", "context_length", "num_heads"])
def test_sizes_must_be_positive_ints(argument, bad):
    kwargs = {"d_in": 3, "d_out": 2, "context_length": 6, "dropout": 0.0, "num_heads": 2}
    kwargs[argument] = bad
    error = ValueError if isinstance(bad, int) and not isinstance(bad, bool) else TypeError
    with pytest.raises(error, match=rf"{argument} must be a positive int"):
        MultiHeadAttention(**kwargs)


@pytest.mark.parametrize("argument", ["d_in", "d_out"])
def test_v1_and_v2_check_sizes(argument):
    kwargs = {"d_in": 3, "d_out": 2, argument: 0}
    for cls in (SelfAttentionV1, SelfAttentionV2):
        with pytest.raises(ValueError, match=rf"{argument} must be a positive int, got 0"):
            cls(**kwargs)


def test_unknown_impl():
    with pytest.raises(ValueError, match=r"impl must be 'manual' or 'sdpa', got 'flash'"):
        MultiHeadAttention(3, 2, 6, 0.0, num_heads=2, impl="flash")


def test_sdpa_cannot_return_weights():
    mha = MultiHeadAttention(3, 2, 6, 0.0, num_heads=2, impl="sdpa")
    with pytest.raises(ValueError, match=r"return_weights=True needs impl='manual'"):
        mha(torch.rand(1, 6, 3), return_weights=True)


@pytest.mark.parametrize("name", BATCHED)
def test_padding_mask_of_wrong_dtype(name):
    with pytest.raises(TypeError, match=r"padding_mask must have dtype torch.bool"):
        _layers()[name](torch.rand(2, 6, 3), padding_mask=torch.zeros(2, 6))


@pytest.mark.parametrize("name", BATCHED)
def test_padding_mask_of_wrong_shape(name):
    with pytest.raises(
        ValueError, match=r"padding_mask must have shape \(B, T\) = \(2, 6\), got \(2, 5\)"
    ):
        _layers()[name](torch.rand(2, 6, 3), padding_mask=torch.zeros(2, 5, dtype=torch.bool))


def test_masked_softmax_checks_its_mask():
    scores = torch.rand(4, 4)
    with pytest.raises(TypeError, match=r"blocked must have dtype torch.bool"):
        masked_softmax(scores, torch.zeros(4, 4))
    with pytest.raises(ValueError, match=r"blocked must broadcast to the scores' shape \(4, 4\)"):
        masked_softmax(scores, torch.zeros(3, 4, dtype=torch.bool))


def test_causal_mask_size():
    with pytest.raises(ValueError, match=r"num_tokens must be an int >= 0, got -1"):
        causal_mask(-1)


def test_weight_free_functions_check_shapes():
    x = toy_inputs()
    with pytest.raises(ValueError, match=r"query must have shape \(d_in,\)"):
        attention_scores(x, x)
    with pytest.raises(ValueError, match=r"inputs must have last dimension query's d_in=4, got 3"):
        attention_scores(torch.rand(4), x)
    with pytest.raises(TypeError, match=r"query and inputs must share a dtype"):
        attention_scores(x[0].double(), x)
    with pytest.raises(ValueError, match=r"weights has 5 entries but inputs has 6 tokens"):
        context_vector(torch.rand(5), x)
    with pytest.raises(ValueError, match=r"inputs must have shape \(T, d_in\) or \(B, T, d_in\)"):
        all_attention_scores(torch.rand(3))
    with pytest.raises(TypeError, match=r"inputs must be a floating-point tensor"):
        simple_self_attention(torch.ones(6, 3, dtype=torch.int32))
    for softmax in (normalize_by_sum, softmax_naive, softmax_stable):
        with pytest.raises(TypeError, match=r"scores must be a floating-point tensor"):
            softmax(torch.tensor([1, 2, 3]))
        with pytest.raises(ValueError, match=r"scores must have shape .*at least 1-D.*got 0 dim"):
            softmax(torch.tensor(1.0))
