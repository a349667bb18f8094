import pytest
import torch

from attention import TOKENS, toy_inputs


def test_tokens_are_the_running_example():
    assert " ".join(TOKENS) == "Your journey starts with one step"


def test_inputs_are_the_books_embeddings():
    x = toy_inputs()
    assert x.shape == (6, 3)
    assert x.dtype == torch.float32
    # float32 holds each two-decimal number to within 3e-8.
    assert x[0].tolist() == pytest.approx([0.43, 0.15, 0.89], rel=0, abs=1e-7)
    assert x[1].tolist() == pytest.approx([0.55, 0.87, 0.66], rel=0, abs=1e-7)
    assert x[5].tolist() == pytest.approx([0.05, 0.80, 0.55], rel=0, abs=1e-7)


def test_each_call_returns_a_fresh_tensor():
    x = toy_inputs()
    x.zero_()
    assert toy_inputs().abs().sum() > 0


def test_dtype_argument():
    assert toy_inputs(dtype=torch.float64).dtype == torch.float64
    with pytest.raises(TypeError, match="dtype must be a floating-point"):
        toy_inputs(dtype=torch.int64)
