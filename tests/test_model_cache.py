"""The cache of trained models: a hit returns the same tensors; any input change misses."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from attention import _model_cache, grammar
from attention._model_cache import cached, key, package_imports

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
