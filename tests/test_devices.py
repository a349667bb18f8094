"""Every ``device=`` argument puts data, masks and generators on that device.

A generator draws only on its own kind of device, so one made for another
device than its tensor gets the package's error naming the argument. On a
machine without CUDA the CPU half still checks the error with PyTorch's
``meta`` device as "another device"; the CUDA half skips, saying why.
"""

from __future__ import annotations

import math

import pytest
import torch

from attention._checks import generator_on
from attention.dropout import inverted_dropout, keep_mask
from attention.dropout_experiment import majority_task
from attention.gpt import GPTConfig, GPTModel, generate
from attention.induction import InductionConfig, repeated_tokens
from attention.induction_scores import train_induction
from attention.rnn import Seq2SeqConfig, digit_batch
from attention.rnn_training import train
from tests.conftest import generator, needs_cuda


def test_a_generator_on_another_device_is_named():
    cpu = torch.Generator()  # cpu: the wrong device on purpose
    with pytest.raises(ValueError, match=r"generator is on cpu but draws for a tensor on meta"):
        keep_mask((2, 3), 0.5, generator=cpu, device="meta")
    with pytest.raises(ValueError, match=r"torch.Generator\(device='meta'\)"):
        inverted_dropout(torch.ones(4, device="meta"), 0.5, training=True, generator=cpu)


def test_a_generator_on_the_tensors_device_is_accepted():
    g = torch.Generator().manual_seed(0)  # cpu: a CPU check
    assert generator_on("generator", g, "cpu") is g
    assert generator_on("generator", None, "meta") is None
    with pytest.raises(TypeError, match=r"generator must be a torch\.Generator or None, got int"):
        generator_on("generator", 3, "cpu")
    out = inverted_dropout(torch.ones(100), 0.5, training=True, generator=g)
    assert set(out.tolist()) == {0.0, 2.0}


@needs_cuda
def test_dropout_on_cuda_takes_a_cuda_generator_and_names_a_cpu_one():
    x = torch.ones(1000, device="cuda")
    g = torch.Generator(device="cuda").manual_seed(0)
    out = inverted_dropout(x, 0.5, training=True, generator=g)
    assert out.device.type == "cuda"
    assert set(out.unique().tolist()) == {0.0, 2.0}
    cpu = torch.Generator()  # cpu: the wrong device on purpose
    with pytest.raises(ValueError, match="generator is on cpu but draws for a tensor on cuda"):
        inverted_dropout(x, 0.5, training=True, generator=cpu)


@needs_cuda
def test_induction_training_runs_on_cuda_with_the_cpu_runs_strings():
    config = InductionConfig(context_length=8)
    gpu = train_induction(config, steps=3, test_size=4, device="cuda")
    cpu = train_induction(config, steps=3, test_size=4)
    assert next(gpu.model.parameters()).device.type == "cuda"
    # The same strings and initial weights; the sums differ in the last bits.
    torch.testing.assert_close(
        torch.tensor(gpu.losses), torch.tensor(cpu.losses), atol=1e-4, rtol=1e-4
    )


def test_data_is_drawn_where_the_generator_draws(device):
    tokens = repeated_tokens(2, 3, vocab_size=5, generator=generator(device))
    source, target = digit_batch(2, 4, generator=generator(device), task="reverse")
    sequences, majority = majority_task(2, vocab_size=3, num_tokens=4, generator=generator(device))
    for t in (tokens, source, target, sequences, majority):
        assert t.device == device
    # exact: integer ids, the second copy is the first one repeated
    assert torch.equal(tokens[:, :3], tokens[:, 3:])
    assert torch.equal(target, source.flip(1))  # exact: integer digits


def test_generate_samples_with_a_generator_on_the_models_device(device):
    cfg = GPTConfig(vocab_size=10, context_length=8, emb_dim=8, n_heads=2, n_layers=1)
    torch.manual_seed(0)
    model = GPTModel(cfg).to(device).eval()
    ids = torch.tensor([[1, 2]], device=device)
    out = generate(model, ids, 3, temperature=1.0, generator=generator(device))
    assert out.device == device
    assert out.shape == (1, 5)


@needs_cuda
def test_generate_names_a_cpu_generator_for_a_cuda_model():
    cfg = GPTConfig(vocab_size=10, context_length=8, emb_dim=8, n_heads=2, n_layers=1)
    model = GPTModel(cfg).to("cuda").eval()
    ids = torch.tensor([[1, 2]], device="cuda")
    cpu = torch.Generator()  # cpu: the wrong device on purpose
    with pytest.raises(ValueError, match="generator is on cpu but draws for a tensor on cuda"):
        generate(model, ids, 3, temperature=1.0, generator=cpu)


def test_the_training_helpers_train_on_the_device(device):
    induction = train_induction(
        InductionConfig(context_length=8), steps=2, test_size=4, device=device
    )
    seq2seq = train(
        Seq2SeqConfig(hidden_size=8), lengths=(3,), steps=2, batch_size=4, device=device
    )
    for run in (induction, seq2seq):
        assert {p.device for p in run.model.parameters()} == {device}
        assert all(math.isfinite(loss) for loss in run.losses)
    assert induction.induction.shape == (2, 2)  # (N, H) scores, brought back to the CPU
    assert 0.0 <= seq2seq.accuracy[0] <= 1.0
