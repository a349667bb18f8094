"""Chapter 6: the tiny model trained with each dropout placement."""

from __future__ import annotations

import math

import pytest
import torch

from attention.dropout import PLACEMENTS
from attention.dropout_experiment import (
    RunResult,
    ToyRunConfig,
    compare_placements,
    majority_task,
    train_toy,
)


def test_majority_targets():
    generator = torch.Generator().manual_seed(0)
    tokens, targets = majority_task(50, vocab_size=3, num_tokens=7, generator=generator)
    assert tokens.shape == targets.shape == (50, 7)
    for row, target in zip(tokens.tolist(), targets.tolist(), strict=True):
        for t in range(7):
            counts = [row[: t + 1].count(v) for v in range(3)]
            assert target[t] == counts.index(max(counts))  # ties go to the smallest token


def test_a_tiny_training_comparison_runs_and_repeats():
    config = ToyRunConfig(train_size=8, val_size=16, steps=6, batch_size=4, eval_every=3)
    results = compare_placements(config)
    assert [r.placement for r in results] == ["none", *PLACEMENTS]
    for r in results:
        assert isinstance(r, RunResult)
        assert math.isfinite(r.train_loss)
        assert math.isfinite(r.val_loss)
        assert 0.0 <= r.train_accuracy <= 1.0
        assert 0.0 <= r.val_accuracy <= 1.0
        assert [step for step, _ in r.history] == [3, 6]
    # exact: seeded, the same operations on the same numbers again
    assert compare_placements(config) == results
    assert results[0] != results[1]  # the dropout made a difference


def test_training_leaves_the_global_random_state_alone():
    # A seed no run uses: another run just before would otherwise have left the
    # global state exactly where a leaking run leaves it, hiding the leak.
    torch.manual_seed(12345)
    before = torch.get_rng_state()
    train_toy(ToyRunConfig(train_size=4, val_size=4, steps=2, batch_size=2), "weights")
    assert torch.equal(torch.get_rng_state(), before)  # exact: the generator's state bytes


def test_bad_config():
    with pytest.raises(TypeError, match=r"config must be a ToyRunConfig, got dict"):
        train_toy({"p": 0.1}, "weights")
    with pytest.raises(ValueError, match=r"config.p must be in \[0, 1\), got 2"):
        train_toy(ToyRunConfig(p=2), "weights")
    with pytest.raises(ValueError, match=r"placement must be one of .*got 'all'"):
        train_toy(ToyRunConfig(), "all")
