"""The `device` fixture reaches every module it should, checked without a GPU.

Collecting the suite with ``--device all`` lists each device-parametrised test
once per device, CUDA included, whether or not this machine has CUDA (the
CUDA case then skips when it runs). So a machine without a GPU can still
check that each module below has CUDA cases, and that none of them builds a
CPU generator a CUDA run could not draw from.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]

# The parity, property and golden tests of every layer (chapters 3 to 8
# included, and chapter 4's hand-set heads), the variants of today's models
# (latent, local/global, sparse, linear and sink attention), additive attention and the RNN
# models, RoPE, the attention-only model, the shortcut experiment, the
# multi-head tracer, flash attention, the KV cache, GPTModel, dropout and the
# training helpers.
DEVICE_MODULES = (
    "test_attention_options.py",
    "test_causal.py",
    "test_cross_attention.py",
    "test_devices.py",
    "test_dropout.py",
    "test_flash.py",
    "test_generate.py",
    "test_gpt.py",
    "test_induction.py",
    "test_kv_cache.py",
    "test_latent.py",
    "test_linear_attention.py",
    "test_local_global.py",
    "test_multihead.py",
    "test_position.py",
    "test_projections.py",
    "test_properties.py",
    "test_recall.py",
    "test_rnn.py",
    "test_scaling.py",
    "test_self_attention.py",
    "test_shortcut.py",
    "test_simple.py",
    "test_sinks.py",
    "test_sparse.py",
    "test_tracing.py",
    "test_training.py",
    "test_variants.py",
)


def _collect(*options: str) -> subprocess.CompletedProcess[str]:
    paths = [f"tests/{name}" for name in DEVICE_MODULES]
    command = [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider"]
    return subprocess.run(
        [*command, *options, *paths], cwd=ROOT, capture_output=True, text=True, check=False
    )


def _cases_per_module(output: str, device: str) -> Counter[str]:
    pattern = re.compile(rf"^tests/(test_\w+\.py)::\S+\[(?:.*-)?{device}(?:-.*)?\]$", re.M)
    return Counter(match.group(1) for match in pattern.finditer(output))


@pytest.fixture(scope="module")
def collected_all() -> str:
    result = _collect("--device", "all")
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def test_every_device_module_has_cuda_cases(collected_all):
    cuda = _cases_per_module(collected_all, "cuda")
    missing = [name for name in DEVICE_MODULES if cuda[name] == 0]
    assert not missing, f"no test takes the device fixture in {missing}"


def test_each_cuda_case_has_its_cpu_twin(collected_all):
    cuda = _cases_per_module(collected_all, "cuda")
    cpu = _cases_per_module(collected_all, "cpu")
    assert sum(cuda.values()) >= 100  # the suite's device cases, not a handful
    assert cuda == cpu


def test_cpu_only_collects_no_cuda_case():
    result = _collect("--device", "cpu")
    assert result.returncode == 0, result.stdout + result.stderr
    assert not _cases_per_module(result.stdout, "cuda")
    assert sum(_cases_per_module(result.stdout, "cpu").values()) >= 100


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error on a machine without CUDA")
def test_device_cuda_without_cuda_stops_with_a_reason():
    result = _collect("--device", "cuda")
    assert result.returncode == pytest.ExitCode.USAGE_ERROR
    assert "--device cuda: no CUDA device here" in result.stderr


@pytest.mark.parametrize("name", DEVICE_MODULES)
def test_device_modules_make_no_cpu_generator(name):
    """``torch.Generator()`` draws only on the CPU: use conftest's ``generator(device)``.

    A line that means the CPU (a CPU golden, a generator on purpose on the
    wrong device) says so with a ``# cpu:`` comment.
    """
    lines = (ROOT / "tests" / name).read_text().splitlines()
    bare = [
        f"{number}: {line.strip()}"
        for number, line in enumerate(lines, start=1)
        if "torch.Generator()" in line and "# cpu:" not in line
    ]
    assert not bare, "\n".join(bare)
