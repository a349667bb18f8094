"""Shared fixtures and Hypothesis settings for the package tests."""

from __future__ import annotations

import importlib
import os
import shutil
import sys
from collections.abc import Callable
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


# The devices a test taking the `device` fixture runs on. The CPU always
# (unless --device cuda); CUDA as a second case that skips, saying why, on a
# machine without it. `pytest --device cuda` (make test-gpu) runs only the
# CUDA case and stops at once where there is no CUDA.
DEVICE_CHOICES = ("auto", "cpu", "cuda", "all")
NO_CUDA = "no CUDA device here (torch.cuda.is_available() is False); run on a GPU machine"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--device",
        choices=DEVICE_CHOICES,
        default="auto",
        help="devices of the tests that take the `device` fixture: auto (default: the CPU, "
        "and CUDA if present, else that case skips), cpu, cuda (only CUDA; an error "
        "without it) or all (both, the CUDA case skipping without it)",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "cuda: the CUDA case of a test (the `device` fixture)")
    if config.getoption("--device") == "cuda" and not torch.cuda.is_available():
        raise pytest.UsageError(f"--device cuda: {NO_CUDA}")


def pytest_report_header(config: pytest.Config) -> str:
    cuda = torch.cuda.get_device_name() if torch.cuda.is_available() else NO_CUDA
    return f"torch {torch.__version__}; --device {config.getoption('--device')}; CUDA: {cuda}"


def chosen_devices(config: pytest.Config) -> list[str]:
    """The device names the `device` fixture is parametrised with, in order."""
    choice = str(config.getoption("--device"))
    return {"cpu": ["cpu"], "cuda": ["cuda"]}.get(choice, ["cpu", "cuda"])


def _parametrizes_device(metafunc: pytest.Metafunc) -> bool:
    """Whether the test parametrizes its own ``device`` (the site tests' browser devices)."""
    for mark in metafunc.definition.iter_markers("parametrize"):
        names = mark.args[0] if mark.args else mark.kwargs.get("argnames", ())
        if isinstance(names, str):
            names = [name.strip() for name in names.split(",")]
        if "device" in names:
            return True
    return False


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "device" not in metafunc.fixturenames or _parametrizes_device(metafunc):
        return
    params = [
        pytest.param(
            name,
            id=name,
            marks=[
                pytest.mark.cuda,
                pytest.mark.skipif(not torch.cuda.is_available(), reason=NO_CUDA),
            ]
            if name == "cuda"
            else [],
        )
        for name in chosen_devices(metafunc.config)
    ]
    metafunc.parametrize("device", params, indirect=True)


# Session scope: one value per device, and Hypothesis accepts it in @given tests.
@pytest.fixture(scope="session")
def device(request: pytest.FixtureRequest) -> torch.device:
    """The device a test makes its tensors, generators and models on (see --device)."""
    return torch.device(request.param)


def generator(device: torch.device | str, seed: int = 0) -> torch.Generator:
    """A seeded generator that draws on ``device`` (a CPU one cannot draw for CUDA)."""
    return torch.Generator(device=device).manual_seed(seed)


@pytest.fixture(autouse=True)
def _same_random_state() -> None:
    """Start every test from torch's seed 0, whichever tests ran before it.

    Tests that draw from the global generator (``torch.rand``) then draw the
    same numbers in every run and in any order or selection of tests.
    """
    torch.manual_seed(0)


def needs_cuda(test: Callable[..., None]) -> Callable[..., None]:
    """Mark a test that is about CUDA itself: `-m cuda` selects it; without CUDA it skips."""
    skip = pytest.mark.skipif(not torch.cuda.is_available(), reason=NO_CUDA)
    return pytest.mark.cuda(skip(test))


# torch.compile's default backend (inductor) writes C++ for the CPU and builds it.
C_COMPILER = pytest.mark.skipif(
    not any(shutil.which(cc) for cc in ("cc", "gcc", "clang")),
    reason="torch.compile on the CPU needs a C compiler",
)
# Inductor itself still calls torch.jit.script_method, which warns (torch 2.13),
# and torch 2.6's inductor warns while it writes its own cache.
INDUCTOR_WARNINGS = pytest.mark.filterwarnings(
    "ignore:`torch.jit.script_method` is deprecated:DeprecationWarning",
    "ignore:Skipping serialization of skipfiles_inline_module_allowlist:UserWarning",
)


@pytest.fixture
def inputs() -> torch.Tensor:
    """The six-token running example, (T, d_in) = (6, 3), on the CPU (the book's goldens)."""
    return toy_inputs()


@pytest.fixture
def batch() -> torch.Tensor:
    """The book's batch: the running example twice, (B, T, d_in) = (2, 6, 3), on the CPU."""
    return torch.stack((toy_inputs(), toy_inputs()))


@pytest.fixture
def device_batch(device: torch.device) -> torch.Tensor:
    """The book's batch, (2, 6, 3), on the test's ``device``."""
    x = toy_inputs(device=device)
    return torch.stack((x, x))


def random_tensor(
    seed: int, *shape: int, dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu"
) -> torch.Tensor:
    """A reproducible standard-normal tensor, independent of the global RNG.

    Drawn on ``device`` by a generator there: a CUDA draw differs from the
    CPU's, so a test that compares with a CPU golden number keeps the CPU.
    """
    return torch.randn(*shape, generator=generator(device, seed), dtype=dtype, device=device)


@pytest.fixture
def one_thread():
    """Run a test on one thread: tiny recurrent models run many times faster than on two."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
