"""Multi-query associative recall: the data, the training run, its cache."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from attention import _model_cache, variants
from attention.linear_attention import ShortConv
from attention.recall import (
    CHOICES,
    PAIR_COUNTS,
    RecallRun,
    recall_batch,
    recall_curve,
    train_recall,
)

# Tiny models train several times faster on one thread than on two.
pytestmark = pytest.mark.usefixtures("one_thread")


def _batch(device, batch_size=3, num_pairs=4, vocab_size=16, num_queries=None, seed=0):
    g = torch.Generator(device=device).manual_seed(seed)
    return recall_batch(
        batch_size, num_pairs, vocab_size=vocab_size, num_queries=num_queries, generator=g
    )


def test_golden_values_on_the_cpu():
    x, y = _batch("cpu", batch_size=1, num_pairs=3, vocab_size=8)
    assert x.tolist() == [[2, 7, 3, 7, 0, 7, 3, 0, 2]]
    assert y.tolist() == [[-100, -100, -100, -100, -100, -100, 7, 7, 7]]


def test_shapes_dtypes_and_device(device):
    x, y = _batch(device, batch_size=3, num_pairs=4, num_queries=2)
    assert x.shape == y.shape == (3, 10)
    assert x.dtype == y.dtype == torch.int64
    assert x.device.type == y.device.type == torch.device(device).type


@given(n=st.integers(1, 8), q=st.integers(1, 8), seed=st.integers(0, 2**16), b=st.integers(1, 4))
def test_layout_keys_values_queries_and_targets(n, q, seed, b):
    q = min(q, n)
    x, y = _batch("cpu", batch_size=b, num_pairs=n, vocab_size=16, num_queries=q, seed=seed)
    keys, values = x[:, 0 : 2 * n : 2], x[:, 1 : 2 * n : 2]  # (B, N) each
    assert ((keys >= 0) & (keys < 8)).all()
    assert ((values >= 8) & (values < 16)).all()
    for row in range(b):
        assert len(set(keys[row].tolist())) == n  # distinct keys
        bound = dict(zip(keys[row].tolist(), values[row].tolist(), strict=True))
        asked = x[row, 2 * n :].tolist()
        assert len(set(asked)) == q
        assert set(asked) <= set(bound)
        assert y[row, 2 * n :].tolist() == [bound[k] for k in asked]
    assert (y[:, : 2 * n] == -100).all()  # nothing is asked while the pairs are listed


def test_the_same_seed_gives_the_same_batch(device):
    first, second = _batch(device), _batch(device)
    # exact: integer ids drawn from the same seed
    assert torch.equal(first[0], second[0])
    assert torch.equal(first[1], second[1])  # exact: integer targets, likewise


def test_a_tiny_training_run(device):
    run = train_recall(
        variants.DeltaNet(),
        (2, 3),
        d_model=8,
        n_heads=2,
        device=device,
        steps=2,
        batch_size=4,
        vocab_size=8,
        test_size=4,
    )
    assert isinstance(run, RecallRun)
    assert run.pairs == (2, 3)
    assert len(run.accuracy) == 2
    assert len(run.losses) == 2
    assert all(math.isfinite(loss) for loss in run.losses)
    assert all(0.0 <= a <= 1.0 for a in run.accuracy)
    assert not run.model.training
    assert next(run.model.parameters()).device.type == torch.device(device).type


def test_recall_curve_gives_one_run_per_choice(device):
    runs = recall_curve(
        [None, variants.Linear()],
        (2,),
        device=device,
        steps=2,
        batch_size=4,
        vocab_size=8,
        test_size=4,
    )
    assert [r.pairs for r in runs] == [(2,), (2,)]
    assert runs[0].model.config.attention is None
    assert runs[1].model.config.attention == variants.Linear()


def test_the_default_choices_are_softmax_and_two_recurrences_with_short_convolutions():
    assert PAIR_COUNTS == (2, 4, 8)
    assert CHOICES[0] is None
    assert CHOICES[1] == variants.Linear(short_conv=3)
    assert CHOICES[2] == variants.DeltaNet(short_conv=3, alpha_bias=-4.0)


@pytest.mark.parametrize("choice", CHOICES, ids=["softmax", "linear", "deltanet"])
def test_each_default_choice_trains_on_the_device(device, choice):
    run = train_recall(
        choice,
        (2, 3),
        d_model=8,
        n_heads=2,
        device=device,
        steps=2,
        batch_size=4,
        vocab_size=8,
        test_size=4,
    )
    assert run.model.config.attention == choice
    convs = [m for m in run.model.modules() if isinstance(m, ShortConv)]
    assert len(convs) == (0 if choice is None else 2 * 3)  # q, k and v in each of two layers
    assert all(math.isfinite(loss) for loss in run.losses)
    assert all(0.0 <= a <= 1.0 for a in run.accuracy)


def test_a_cached_run_loads_the_same_model(tmp_path, monkeypatch):
    monkeypatch.setenv(_model_cache.ENVIRONMENT_VARIABLE, str(tmp_path))
    first = train_recall(variants.Linear(), (2,), steps=2, batch_size=4, vocab_size=8, test_size=4)
    assert len(list(tmp_path.glob("train_recall-*.pt"))) == 1
    second = train_recall(variants.Linear(), (2,), steps=2, batch_size=4, vocab_size=8, test_size=4)
    assert second is not first
    assert second.losses == first.losses  # exact: stored floats
    assert second.accuracy == first.accuracy  # exact: stored floats
    for tensor, loaded in zip(
        first.model.state_dict().values(), second.model.state_dict().values(), strict=True
    ):
        assert torch.equal(tensor, loaded)  # exact: the stored tensors, bit for bit
    train_recall(
        None, (2,), steps=2, batch_size=4, vocab_size=8, test_size=4
    )  # another choice: another entry
    assert len(list(tmp_path.glob("train_recall-*.pt"))) == 2


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"num_pairs": 0}, ValueError, "num_pairs"),
        ({"num_pairs": 5}, ValueError, "num_pairs must be <= vocab_size // 2 = 4"),
        ({"vocab_size": 7}, ValueError, "vocab_size must be an even int"),
        ({"num_queries": 4}, ValueError, "num_queries must be <= num_pairs=3"),
        ({"batch_size": 1.5}, TypeError, "batch_size"),
        ({"generator": None}, TypeError, "generator must be a torch.Generator"),
    ],
)
def test_recall_batch_bad_inputs(kwargs, error, match):
    g = torch.Generator()  # cpu: bad arguments fail before anything is drawn
    args = {"batch_size": 2, "num_pairs": 3, "vocab_size": 8, "generator": g}
    args.update(kwargs)
    with pytest.raises(error, match=match):
        recall_batch(
            args["batch_size"],
            args["num_pairs"],
            vocab_size=args["vocab_size"],
            num_queries=args.get("num_queries"),
            generator=args["generator"],
        )


@pytest.mark.parametrize(
    ("args", "kwargs", "error", "match"),
    [
        (((),), {}, TypeError, "num_pairs must be a non-empty sequence"),
        ((4,), {}, TypeError, "num_pairs must be a non-empty sequence"),
        (((2, 0),), {}, ValueError, "num_pairs"),
        (((5,),), {"vocab_size": 8}, ValueError, "vocab_size must be even and >= 2"),
        (((2,),), {"steps": 0}, ValueError, "steps"),
        (((2,),), {"lr": -1.0}, ValueError, "lr"),
        (((2,),), {"seed": -1}, ValueError, "seed"),
        (((2,),), {"d_model": 0}, ValueError, "d_model"),
    ],
)
def test_train_recall_bad_inputs(args, kwargs, error, match):
    with pytest.raises(error, match=match):
        train_recall(None, *args, **kwargs)
