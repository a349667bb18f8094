"""Chapter 4: trainable self-attention reproduces the book's seeded numbers."""

from __future__ import annotations

import torch

from attention import SelfAttentionV1, SelfAttentionV2, toy_inputs

BOOK = 1e-4

# Seed 123, d_in = 3, d_out = 2: W_query, W_key, W_value drawn with torch.rand in that order.
QUERY_JOURNEY = [0.4306, 1.4551]
SCORE_JOURNEY_JOURNEY = 1.8524
SCORES_JOURNEY = [1.2705, 1.8524, 1.8111, 1.0795, 0.5577, 1.5440]
WEIGHTS_JOURNEY = [0.1500, 0.2264, 0.2199, 0.1311, 0.0906, 0.1820]
CONTEXT_JOURNEY = [0.3061, 0.8210]
V1_SEED_123 = [
    [0.2996, 0.8053],
    [0.3061, 0.8210],
    [0.3058, 0.8203],
    [0.2948, 0.7939],
    [0.2927, 0.7891],
    [0.2990, 0.8040],
]
V2_SEED_789 = [
    [-0.0739, 0.0713],
    [-0.0748, 0.0703],
    [-0.0749, 0.0702],
    [-0.0760, 0.0685],
    [-0.0763, 0.0679],
    [-0.0754, 0.0693],
]


def _close(actual, expected) -> bool:
    """The book's printed numbers, compared on the device ``actual`` lives on."""
    return torch.allclose(actual, torch.tensor(expected, device=actual.device), atol=BOOK, rtol=0)


# The seeded layers are built on the CPU, where the book drew their weights, and
# then moved: the same weights on every device, so CUDA must give the goldens too.
def test_step_by_step_for_journey(device):
    inputs = toy_inputs(device=device)
    torch.manual_seed(123)
    layer = SelfAttentionV1(3, 2).to(device)
    x_2 = inputs[1]
    query = x_2 @ layer.W_query
    keys = inputs @ layer.W_key
    values = inputs @ layer.W_value
    assert keys.shape == values.shape == (6, 2)
    assert _close(query, QUERY_JOURNEY)
    assert abs((query @ keys[1]).item() - SCORE_JOURNEY_JOURNEY) < BOOK
    scores = query @ keys.T
    assert _close(scores, SCORES_JOURNEY)
    weights = torch.softmax(scores / keys.shape[-1] ** 0.5, dim=-1)
    assert _close(weights, WEIGHTS_JOURNEY)
    assert _close(weights @ values, CONTEXT_JOURNEY)
    context, all_weights = layer(inputs, return_weights=True)
    assert torch.allclose(context[1], weights @ values, atol=1e-6, rtol=0)
    assert torch.allclose(all_weights[1], weights, atol=1e-6, rtol=0)


def test_v1_seed_123(device):
    torch.manual_seed(123)
    layer = SelfAttentionV1(3, 2).to(device)
    assert _close(layer(toy_inputs(device=device)), V1_SEED_123)


def test_v2_seed_789(device):
    torch.manual_seed(789)
    layer = SelfAttentionV2(3, 2).to(device)
    assert _close(layer(toy_inputs(device=device)), V2_SEED_789)


def test_v1_equals_v2_with_transposed_weights(device):
    inputs = toy_inputs(device=device)
    torch.manual_seed(789)
    v2 = SelfAttentionV2(3, 2).to(device)
    v1 = SelfAttentionV1(3, 2).to(device)
    with torch.no_grad():
        v1.W_query.copy_(v2.W_query.weight.T)
        v1.W_key.copy_(v2.W_key.weight.T)
        v1.W_value.copy_(v2.W_value.weight.T)
    assert torch.allclose(v1(inputs), v2(inputs), atol=1e-6)


def test_parameters_created_in_the_books_order():
    for cls in (SelfAttentionV1, SelfAttentionV2):
        names = [name.split(".")[0] for name, _ in cls(3, 2).named_parameters()]
        assert names == ["W_query", "W_key", "W_value"]


def test_batched_input_equals_each_sequence(device_batch):
    batch = device_batch
    torch.manual_seed(0)
    for layer in (SelfAttentionV1(3, 4), SelfAttentionV2(3, 4, qkv_bias=True)):
        layer.to(device_batch.device)
        out = layer(batch)
        assert out.shape == (2, 6, 4)
        assert torch.allclose(out[1], layer(batch[1]), atol=1e-6)
