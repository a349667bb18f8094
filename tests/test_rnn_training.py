"""Chapter 1: training the encoder-decoder RNNs and measuring what they learned."""

from __future__ import annotations

import pytest
import torch

from attention.rnn import Seq2SeqConfig
from attention.rnn_training import TrainingRun, alignment, influence, position_accuracy, train
from tests.test_rnn import _digits, _model

TINY = Seq2SeqConfig(embed_size=4, hidden_size=8, attention_size=6)

pytestmark = pytest.mark.usefixtures("one_thread")


def test_position_accuracy_counts_right_digits():
    model = _model(attention=True)
    source = _digits(3, 5, 4)
    answers = model(source)[0].argmax(dim=-1)
    # exact: fractions of right digits, all or none of them
    assert torch.equal(position_accuracy(model, source, answers), torch.ones(4))
    wrong = (answers + 1) % 10
    assert torch.equal(position_accuracy(model, source, wrong), torch.zeros(4))  # exact: 0/n


# -- training -------------------------------------------------------------------


def _tiny_run(attention: bool, seed: int = 0, steps: int = 100) -> TrainingRun:
    config = Seq2SeqConfig(attention=attention, embed_size=4, hidden_size=16, attention_size=8)
    return train(config, lengths=(3, 4), steps=steps, batch_size=16, seed=seed, test_size=20)


@pytest.mark.parametrize("attention", [False, True])
def test_a_short_training_run_lowers_the_loss(attention):
    run = _tiny_run(attention)
    assert len(run.losses) == 100
    assert run.lengths == (3, 4)
    assert len(run.accuracy) == 2
    assert sum(run.losses[-5:]) < 0.85 * sum(run.losses[:5])
    assert all(0.0 <= a <= 1.0 for a in run.accuracy)
    assert not run.model.training
    assert run.seconds > 0


def test_training_is_reproducible_and_leaves_the_global_state_alone():
    state = torch.random.get_rng_state()
    first, second = _tiny_run(True, seed=5, steps=10), _tiny_run(True, seed=5, steps=10)
    assert torch.equal(torch.random.get_rng_state(), state)  # exact: the state's bytes
    # exact: seeded, the same operations on the same numbers again
    assert first.losses == second.losses
    assert first.accuracy == second.accuracy
    assert _tiny_run(True, seed=6, steps=10).losses != first.losses


def test_alignment_shape():
    model = _model(attention=True)
    weights = alignment(model, torch.tensor([3, 1, 4, 1, 5]))
    assert weights.shape == (5, 5)
    assert torch.allclose(weights.sum(dim=-1), torch.ones(5), atol=1e-6)


def test_influence_equals_the_jacobian_norm():
    encoder = _model(attention=False).encoder
    source = _digits(4, 2, 5)
    got = influence(encoder, source)
    assert got.shape == (5,)
    assert (got > 0).all()
    expected = torch.zeros(5)
    for b in range(2):
        x = encoder.embedding(source[b : b + 1]).detach()  # (1, S, E)
        jac = torch.autograd.functional.jacobian(lambda e: encoder.gru(e)[1][0, 0], x)
        expected += jac.square().sum(dim=(0, 1, 3)).sqrt() / 2  # (N, 1, S, E) -> (S,)
    assert torch.allclose(got, expected, atol=1e-5)


# -- bad input ------------------------------------------------------------------


def test_bad_measurement_arguments():
    model = _model(attention=False)
    with pytest.raises(ValueError, match=r"target must have the shape of source, \(2, 4\), got"):
        position_accuracy(model, _digits(0, 2, 4), _digits(0, 2, 5))
    with pytest.raises(TypeError, match=r"encoder must be an Encoder, got Seq2Seq"):
        influence(model, _digits(0, 2, 4))  # type: ignore[arg-type]


def test_bad_training_and_alignment_arguments():
    with pytest.raises(ValueError, match=r"lengths must hold at least one length"):
        train(TINY, lengths=())
    with pytest.raises(ValueError, match=r"lengths must be a positive int, got 0"):
        train(TINY, lengths=(3, 0))
    with pytest.raises(ValueError, match=r"lr must be a positive number, got -0.1"):
        train(TINY, lr=-0.1)
    with pytest.raises(ValueError, match=r"seed must be an int >= 0, got -1"):
        train(TINY, seed=-1)
    with pytest.raises(ValueError, match=r"model must be a Seq2Seq built with .*attention=True"):
        alignment(_model(attention=False), torch.tensor([1, 2, 3]))
    with pytest.raises(ValueError, match=r"source must have shape \(S,\), got shape \(1, 3\)"):
        alignment(_model(attention=True), torch.tensor([[1, 2, 3]]))
