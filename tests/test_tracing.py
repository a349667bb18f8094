"""Chapter 8: the multi-head shape tracer."""

from __future__ import annotations

import html
import re

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from attention import MultiHeadAttention, toy_inputs
from attention.tracing import Trace, trace_multihead
from tests.conftest import random_tensor

# The trace of MultiHeadAttention(3, 4, 6, 0.0, num_heads=2) on the book's batch.
KNOWN_TRACE = [
    ("x", "(B, T, d_in)", (2, 6, 3)),
    ("queries", "(B, T, C)", (2, 6, 4)),
    ("queries", "(B, T, H, D)", (2, 6, 2, 2)),
    ("queries", "(B, H, T, D)", (2, 2, 6, 2)),
    ("keys", "(B, T, C)", (2, 6, 4)),
    ("keys", "(B, T, H, D)", (2, 6, 2, 2)),
    ("keys", "(B, H, T, D)", (2, 2, 6, 2)),
    ("values", "(B, T, C)", (2, 6, 4)),
    ("values", "(B, T, H, D)", (2, 6, 2, 2)),
    ("values", "(B, H, T, D)", (2, 2, 6, 2)),
    ("keys_t", "(B, H, D, T)", (2, 2, 2, 6)),
    ("scores", "(B, H, T, T)", (2, 2, 6, 6)),
    ("scaled", "(B, H, T, T)", (2, 2, 6, 6)),
    ("blocked", "(T, T)", (6, 6)),
    ("weights", "(B, H, T, T)", (2, 2, 6, 6)),
    ("weights", "(B, H, T, T)", (2, 2, 6, 6)),
    ("context", "(B, H, T, D)", (2, 2, 6, 2)),
    ("context", "(B, T, H, D)", (2, 6, 2, 2)),
    ("context", "(B, T, H, D)", (2, 6, 2, 2)),
    ("context", "(B, T, C)", (2, 6, 4)),
    ("output", "(B, T, C)", (2, 6, 4)),
]


def _book_layer(device: torch.device | str = "cpu") -> MultiHeadAttention:
    """The traced layer, drawn on the CPU with the book's seed, then moved."""
    torch.manual_seed(123)
    return MultiHeadAttention(3, 4, 6, 0.0, num_heads=2).to(device)


@pytest.fixture
def mha() -> MultiHeadAttention:
    return _book_layer()


def test_known_trace_shapes(device_batch):
    batch, mha = device_batch, _book_layer(device_batch.device)
    trace = trace_multihead(mha, batch)
    assert isinstance(trace, Trace)
    assert [(s.name, s.layout, s.shape) for s in trace] == KNOWN_TRACE
    # exact: the trace runs the layer's own operations, in the same order, on the same numbers
    assert torch.equal(trace.output, mha(batch))


def test_only_transposed_tensors_are_not_contiguous(device_batch):
    batch, mha = device_batch, _book_layer(device_batch.device)
    trace = trace_multihead(mha, batch)
    loose = [(s.name, s.code) for s in trace if not s.contiguous]
    assert loose == [
        ("queries", "queries.transpose(1, 2)"),
        ("keys", "keys.transpose(1, 2)"),
        ("values", "values.transpose(1, 2)"),
        ("keys_t", "keys.transpose(2, 3)"),
        ("context", "context.transpose(1, 2)"),
    ]
    assert trace.steps("context")[2].code == "context.contiguous()"
    assert trace.steps("context")[2].contiguous


def test_book_seed_123_output_through_the_trace(device_batch):
    batch = device_batch
    torch.manual_seed(123)
    layer = MultiHeadAttention(3, 2, 6, 0.0, num_heads=2).to(batch.device)
    trace = trace_multihead(layer, batch)
    expected = torch.tensor([0.3190, 0.4858], device=batch.device)
    assert torch.allclose(trace.output[0, 0], expected, atol=1e-4, rtol=0)
    weights = trace.step("weights").tensor
    assert weights.shape == (2, 2, 6, 6)
    assert torch.equal(weights, layer(batch, return_weights=True)[1])  # exact: the same operations


def test_step_lookup(mha, batch):
    trace = trace_multihead(mha, batch)
    assert trace.step("queries").layout == "(B, H, T, D)"  # the last version
    assert len(trace.steps("queries")) == 3
    with pytest.raises(KeyError, match="no step named 'nope'"):
        trace.step("nope")


@given(
    batch_size=st.integers(1, 3),
    tokens=st.integers(1, 5),
    d_in=st.integers(1, 5),
    heads=st.integers(1, 3),
    head_dim=st.integers(1, 3),
    qkv_bias=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_trace_output_equals_the_layer(
    device, batch_size, tokens, d_in, heads, head_dim, qkv_bias, seed
):
    torch.manual_seed(seed)
    layer = MultiHeadAttention(d_in, heads * head_dim, 5, 0.0, heads, qkv_bias).to(device)
    x = random_tensor(seed, batch_size, tokens, d_in, device=device)
    trace = trace_multihead(layer, x)
    assert torch.equal(trace.output, layer(x))  # exact: the same operations in the same order
    assert trace.step("scores").shape == (batch_size, heads, tokens, tokens)
    assert trace.step("output").shape == (batch_size, tokens, heads * head_dim)


def test_trace_with_padding_and_sdpa(device_batch):
    batch = device_batch
    torch.manual_seed(1)
    layer = MultiHeadAttention(3, 4, 6, 0.0, num_heads=2, impl="sdpa").to(batch.device)
    padding = torch.zeros(2, 6, dtype=torch.bool, device=batch.device)
    padding[1, :2] = True
    trace = trace_multihead(layer, batch, padding_mask=padding)
    assert trace.step("blocked").layout == "(B, 1, T, T)"
    assert torch.allclose(trace.output, layer(batch, padding_mask=padding), atol=1e-6)
    assert not torch.allclose(trace.output, trace_multihead(layer, batch).output, atol=1e-6, rtol=0)


def test_trace_with_dropout_draws_the_layers_mask(device_batch):
    batch = device_batch
    torch.manual_seed(2)
    layer = MultiHeadAttention(3, 4, 6, 0.5, num_heads=2).to(batch.device).train()
    # torch.manual_seed seeds CUDA's generators too: both runs draw the same mask.
    torch.manual_seed(7)
    traced = trace_multihead(layer, batch)
    torch.manual_seed(7)
    # exact: the same seed draws the same dropout mask; then the same operations
    assert torch.equal(traced.output, layer(batch))
    assert "p=0.5" in traced.steps("weights")[1].code
    assert "identity" in trace_multihead(layer.eval(), batch).steps("weights")[1].code


def test_html_and_text_name_every_step(mha, batch):
    trace = trace_multihead(mha, batch)
    page = trace._repr_html_()
    assert page.startswith('<div class="attn-trace"')
    assert page.count("<tr>") == len(trace) + 1  # the header and one row per step
    for step in trace:
        assert re.search(rf"<code [^>]*>{re.escape(html.escape(step.code))}</code>", page)
        assert re.search(rf"<code [^>]*>{re.escape(step.name)}</code>", page)
    text = str(trace)
    assert len(text.splitlines()) == len(trace) + 1
    assert text.splitlines()[12].split()[:3] == ["12", "scores", "queries"]


def test_trace_bad_input(mha, batch):
    with pytest.raises(TypeError, match="layer must be a MultiHeadAttention, got Linear"):
        trace_multihead(torch.nn.Linear(3, 4), batch)
    with pytest.raises(ValueError, match=r"x must have shape \(B, T, d_in\) \(3-D\)"):
        trace_multihead(mha, toy_inputs())
    with pytest.raises(ValueError, match="x must have last dimension d_in=3, got 4"):
        trace_multihead(mha, torch.rand(2, 6, 4))
    with pytest.raises(ValueError, match="more than context_length=6"):
        trace_multihead(mha, torch.rand(1, 7, 3))
    with pytest.raises(TypeError, match=r"padding_mask must have dtype torch\.bool"):
        trace_multihead(mha, batch, padding_mask=torch.zeros(2, 6))
