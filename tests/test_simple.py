"""Chapter 3: weight-free self-attention reproduces the book's printed numbers."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from attention import (
    all_attention_scores,
    attention_scores,
    context_vector,
    normalize_by_sum,
    simple_self_attention,
    softmax_naive,
    softmax_stable,
    toy_inputs,
)
from tests.conftest import random_tensor

BOOK = 1e-4  # the book prints four decimals

# Published outputs of the book's chapter 3 notebook, query = inputs[1] ("journey").
SCORES_JOURNEY = [0.9544, 1.4950, 1.4754, 0.8434, 0.7070, 1.0865]
SUM_NORMALISED = [0.1455, 0.2278, 0.2249, 0.1285, 0.1077, 0.1656]
SOFTMAX = [0.1385, 0.2379, 0.2333, 0.1240, 0.1082, 0.1581]
CONTEXT_JOURNEY = [0.4419, 0.6515, 0.5683]
ALL_SCORES = [
    [0.9995, 0.9544, 0.9422, 0.4753, 0.4576, 0.6310],
    [0.9544, 1.4950, 1.4754, 0.8434, 0.7070, 1.0865],
    [0.9422, 1.4754, 1.4570, 0.8296, 0.7154, 1.0605],
    [0.4753, 0.8434, 0.8296, 0.4937, 0.3474, 0.6565],
    [0.4576, 0.7070, 0.7154, 0.3474, 0.6654, 0.2935],
    [0.6310, 1.0865, 1.0605, 0.6565, 0.2935, 0.9450],
]
ALL_WEIGHTS = [
    [0.2098, 0.2006, 0.1981, 0.1242, 0.1220, 0.1452],
    [0.1385, 0.2379, 0.2333, 0.1240, 0.1082, 0.1581],
    [0.1390, 0.2369, 0.2326, 0.1242, 0.1108, 0.1565],
    [0.1435, 0.2074, 0.2046, 0.1462, 0.1263, 0.1720],
    [0.1526, 0.1958, 0.1975, 0.1367, 0.1879, 0.1295],
    [0.1385, 0.2184, 0.2128, 0.1420, 0.0988, 0.1896],
]
ALL_CONTEXT = [
    [0.4421, 0.5931, 0.5790],
    [0.4419, 0.6515, 0.5683],
    [0.4431, 0.6496, 0.5671],
    [0.4304, 0.6298, 0.5510],
    [0.4671, 0.5910, 0.5266],
    [0.4177, 0.6503, 0.5645],
]


def _close(actual: torch.Tensor, expected: list) -> bool:
    """The book's printed numbers, compared on the device ``actual`` lives on."""
    return torch.allclose(actual, torch.tensor(expected, device=actual.device), atol=BOOK, rtol=0)


# The goldens run on the test's device: the inputs are the book's fixed numbers,
# and no random draw is involved, so CUDA must print the same four decimals.
def test_scores_of_journey(device):
    inputs = toy_inputs(device=device)
    assert _close(attention_scores(inputs[1], inputs), SCORES_JOURNEY)


def test_sum_normalisation(device):
    inputs = toy_inputs(device=device)
    assert _close(normalize_by_sum(attention_scores(inputs[1], inputs)), SUM_NORMALISED)


@pytest.mark.parametrize("softmax", [softmax_naive, softmax_stable])
def test_softmax_weights(device, softmax):
    inputs = toy_inputs(device=device)
    assert _close(softmax(attention_scores(inputs[1], inputs)), SOFTMAX)


def test_context_vector_of_journey(device):
    inputs = toy_inputs(device=device)
    weights = torch.softmax(attention_scores(inputs[1], inputs), dim=-1)
    assert _close(context_vector(weights, inputs), CONTEXT_JOURNEY)


def test_all_tokens_at_once(device):
    inputs = toy_inputs(device=device)
    assert _close(all_attention_scores(inputs), ALL_SCORES)
    context, weights = simple_self_attention(inputs, return_weights=True)
    assert _close(weights, ALL_WEIGHTS)
    assert _close(context, ALL_CONTEXT)
    assert torch.equal(simple_self_attention(inputs), context)  # exact: the same call again


def test_naive_softmax_overflows_and_stable_does_not(device):
    large = torch.tensor([100.0, 101.0, 102.0], device=device)
    assert softmax_naive(large).isnan().all()
    assert torch.allclose(softmax_stable(large), torch.softmax(large, dim=-1), atol=1e-6, rtol=0)


def test_sum_normalisation_fails_on_scores_that_cancel(device):
    weights = normalize_by_sum(torch.tensor([2.0, -1.0, -1.0], device=device))
    assert not weights.isfinite().any()


@given(
    seed=st.integers(0, 2**31 - 1),
    rows=st.integers(1, 4),
    cols=st.integers(1, 9),
    scale=st.floats(0.1, 30.0),
)
def test_stable_softmax_equals_torch(device, seed, rows, cols, scale):
    scores = random_tensor(seed, rows, cols, device=device) * scale
    assert torch.allclose(softmax_stable(scores), torch.softmax(scores, dim=-1), atol=1e-6)


@given(
    seed=st.integers(0, 2**31 - 1), b=st.integers(1, 3), t=st.integers(1, 8), d=st.integers(1, 5)
)
def test_batched_form_equals_one_sequence_at_a_time(device, seed, b, t, d):
    x = random_tensor(seed, b, t, d, device=device)
    batched = simple_self_attention(x)
    for i in range(b):
        assert torch.allclose(batched[i], simple_self_attention(x[i]), atol=1e-6)
        for q in range(t):
            weights = torch.softmax(attention_scores(x[i, q], x[i]), dim=-1)
            assert torch.allclose(batched[i, q], context_vector(weights, x[i]), atol=1e-5)
