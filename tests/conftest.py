"""Shared fixtures and Hypothesis settings for the package tests."""

from __future__ import annotations

import importlib
import os
import shutil
import sys
from pathlib import Path
from types import ModuleType

import pytest
import torch
from hypothesis import settings

from attention import toy_inputs

# Torch's first call of an op can take far longer than later ones; a deadline
# would turn that warm-up into flaky failures. derandomize: every run tries
# the same examples, so `make test` passes or fails the same way each time.
# HYPOTHESIS_PROFILE=explore draws new examples on every run, five times as
# many: a way to hunt for counterexamples, not a check that gates anything.
settings.register_profile(
    "attention", deadline=None, max_examples=40, derandomize=True, print_blob=True
)
settings.register_profile("explore", deadline=None, max_examples=200, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "attention"))

# The site's Sphinx extensions: not a package; conf.py puts the folder on the path.
EXTENSIONS = Path(__file__).resolve().parents[1] / "docs" / "_ext"


def extension(name: str) -> ModuleType:
    """Import the extension docs/_ext/<name>.py as conf.py does (by its bare name)."""
    if str(EXTENSIONS) not in sys.path:
        sys.path.insert(0, str(EXTENSIONS))
    return importlib.import_module(name)


@pytest.fixture(autouse=True)
def _same_random_state() -> None:
    """Start every test from torch's seed 0, whichever tests ran before it.

    Tests that draw from the global generator (``torch.rand``) then draw the
    same numbers in every run and in any order or selection of tests.
    """
    torch.manual_seed(0)


CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
# torch.compile's default backend (inductor) writes C++ for the CPU and builds it.
C_COMPILER = pytest.mark.skipif(
    not any(shutil.which(cc) for cc in ("cc", "gcc", "clang")),
    reason="torch.compile on the CPU needs a C compiler",
)
# Inductor itself still calls torch.jit.script_method, which warns (torch 2.13).
INDUCTOR_WARNINGS = pytest.mark.filterwarnings(
    "ignore:`torch.jit.script_method` is deprecated:DeprecationWarning"
)


@pytest.fixture
def inputs() -> torch.Tensor:
    """The six-token running example, (T, d_in) = (6, 3)."""
    return toy_inputs()


@pytest.fixture
def batch() -> torch.Tensor:
    """The book's batch: the running example twice, (B, T, d_in) = (2, 6, 3)."""
    return torch.stack((toy_inputs(), toy_inputs()))


def random_tensor(seed: int, *shape: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """A reproducible standard-normal tensor, independent of the global RNG."""
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g, dtype=dtype)


@pytest.fixture
def one_thread():
    """Run a test on one thread: tiny recurrent models run many times faster than on two."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
