"""The cache of trained models: a hit returns the same tensors; any input change misses."""

from __future__ import annotations

import fcntl
import shutil
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from attention import _model_cache, dropout_experiment, grammar, induction_scores, rnn_training
from attention._model_cache import cached, key, package_imports
from attention.dropout_experiment import ToyRunConfig
from attention.induction import InductionConfig
from attention.rnn import Seq2SeqConfig

SRC = Path(grammar.__file__).resolve().parents[1]


def test_the_imports_are_those_python_loads():
    found = package_imports("attention.grammar", SRC)
    assert {"attention.grammar", "attention.induction", "attention._training"} <= set(found)
    assert "attention.flash" not in found  # neither grammar nor what it imports loads it


def _copy_package(tmp_path: Path) -> Path:
    root = tmp_path / "src"
    shutil.copytree(SRC / "attention", root / "attention")
    return root


def test_the_key_changes_with_an_imported_module_and_only_then(tmp_path):
    root = _copy_package(tmp_path)
    before = key(grammar.train_grammar, (1, 2), root)
    assert key(grammar.train_grammar, (1, 2), root) == before
    with (root / "attention" / "flash.py").open("a") as f:
        f.write("# a comment in a module the training does not import\n")
    assert key(grammar.train_grammar, (1, 2), root) == before
    with (root / "attention" / "_training.py").open("a") as f:  # imported through another
        f.write("# a comment in a module the training imports\n")
    assert key(grammar.train_grammar, (1, 2), root) != before


def test_the_key_changes_with_the_arguments_and_the_floating_point_settings(monkeypatch):
    base = key(grammar.train_grammar, (1, 2), SRC)
    assert key(grammar.train_grammar, (1, 3), SRC) != base
    monkeypatch.setenv("MKL_CBWR", "COMPATIBLE")
    assert key(grammar.train_grammar, (1, 2), SRC) != base


def test_without_the_variable_nothing_is_cached(monkeypatch):
    monkeypatch.delenv(_model_cache.ENVIRONMENT_VARIABLE, raising=False)
    calls = []
    assert cached(grammar.train_grammar, (0,), lambda: calls.append(1) or len(calls)) == 1
    assert cached(grammar.train_grammar, (0,), lambda: calls.append(1) or len(calls)) == 2


@pytest.mark.usefixtures("one_thread")
def test_a_cached_training_loads_the_same_model(tmp_path, monkeypatch):
    monkeypatch.setenv(_model_cache.ENVIRONMENT_VARIABLE, str(tmp_path))
    first = grammar.train_grammar(steps=3, batch_size=4)
    assert len(list(tmp_path.glob("train_grammar-*.pt"))) == 1
    second = grammar.train_grammar(steps=3, batch_size=4)
    assert second.model is not first.model  # loaded, not the same object
    assert second.losses == first.losses  # exact: loaded from the stored floats
    before, after = first.model.state_dict(), second.model.state_dict()
    assert list(before) == list(after)
    for name, tensor in before.items():
        assert torch.equal(tensor, after[name])  # exact: the stored tensors, bit for bit
    grammar.train_grammar(steps=4, batch_size=4)  # other arguments: a second entry
    assert len(list(tmp_path.glob("train_grammar-*.pt"))) == 2


@pytest.mark.usefixtures("one_thread")
@pytest.mark.parametrize(
    ("name", "train"),
    [
        ("train", lambda: rnn_training.train(Seq2SeqConfig(hidden_size=8), lengths=(3,), steps=2)),
        (
            "train_induction",
            lambda: induction_scores.train_induction(
                InductionConfig(context_length=8), steps=2, test_size=4
            ),
        ),
        (
            "train_toy",
            lambda: dropout_experiment.train_toy(
                ToyRunConfig(train_size=8, val_size=8, steps=2, eval_every=1), "scores"
            ),
        ),
    ],
)
def test_the_other_trainings_are_cached_too(tmp_path, monkeypatch, name, train):
    monkeypatch.setenv(_model_cache.ENVIRONMENT_VARIABLE, str(tmp_path))
    first = train()
    assert len(list(tmp_path.glob(f"{name}-*.pt"))) == 1
    second = train()
    assert second is not first  # loaded, not the same object
    assert repr(second) == repr(first)  # every field, printed in full precision
    model = getattr(first, "model", None)
    if model is not None:
        for tensor, loaded in zip(
            model.state_dict().values(), second.model.state_dict().values(), strict=True
        ):
            assert torch.equal(tensor, loaded)  # exact: the stored tensors, bit for bit


def test_a_training_holds_the_entry_lock_so_a_second_kernel_waits_and_loads(tmp_path, monkeypatch):
    monkeypatch.setenv(_model_cache.ENVIRONMENT_VARIABLE, str(tmp_path))
    held = []

    def train() -> str:
        # What another kernel would meet now: the entry's lock, taken.
        (lock_path,) = tmp_path.glob("train_grammar-*.lock")
        with lock_path.open("a") as other:
            try:
                fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                held.append(True)
            else:
                held.append(False)
        return "trained"

    assert cached(grammar.train_grammar, ("lock",), train) == "trained"
    assert held == [True]
    again = cached(grammar.train_grammar, ("lock",), lambda: "trained again")
    assert again == "trained"  # loaded: the entry was written before the lock was let go


@pytest.mark.usefixtures("one_thread")
def test_a_run_without_dropout_is_stored_once_for_every_p(tmp_path, monkeypatch):
    # "none" trains with p = 0 whatever config.p says, so chapter 6's p = 0.2
    # comparison loads the run its p = 0.1 comparison stored.
    monkeypatch.setenv(_model_cache.ENVIRONMENT_VARIABLE, str(tmp_path))
    config = ToyRunConfig(train_size=8, val_size=8, steps=2, eval_every=1)
    first = dropout_experiment.train_toy(config, "none")
    again = dropout_experiment.train_toy(replace(config, p=0.2), "none")
    assert len(list(tmp_path.glob("train_toy-*.pt"))) == 1
    assert again is not first
    assert repr(again) == repr(first)  # every field, printed in full precision
    # The same run, trained afresh with p = 0.2, gives the same result: the key
    # is right to ignore p.
    monkeypatch.delenv(_model_cache.ENVIRONMENT_VARIABLE)
    assert repr(dropout_experiment.train_toy(replace(config, p=0.2), "none")) == repr(first)
    # With dropout, p matters and gets its own entry.
    monkeypatch.setenv(_model_cache.ENVIRONMENT_VARIABLE, str(tmp_path))
    dropout_experiment.train_toy(config, "scores")
    dropout_experiment.train_toy(replace(config, p=0.2), "scores")
    assert len(list(tmp_path.glob("train_toy-*.pt"))) == 3
