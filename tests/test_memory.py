"""Chapter 13: the two memory probes, against each other and against known sizes."""

from __future__ import annotations

import functools
import os
import warnings
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

from attention import memory
from attention.complexity import score_matrix_bytes
from attention.flash import flash_attention, reference_attention
from attention.memory import peak_allocated_bytes, peak_tensor_bytes
from tests.conftest import needs_cuda, random_tensor

PROBES = [peak_tensor_bytes, peak_allocated_bytes]


@pytest.mark.parametrize("probe", PROBES)
def test_one_allocation_is_its_size(probe):
    assert probe(lambda: torch.empty(250)) == 1000
    assert probe(lambda: torch.empty(250, dtype=torch.float64)) == 2000


@pytest.mark.parametrize("probe", PROBES)
def test_counts_live_tensors_not_freed_ones(probe):
    def one_at_a_time():
        for _ in range(10):
            torch.ones(100)

    def all_kept():
        return [torch.ones(100) for _ in range(10)]

    assert probe(one_at_a_time) == 400
    assert probe(all_kept) == 4000


@pytest.mark.parametrize("probe", PROBES)
def test_memory_held_before_the_call_is_not_counted(probe):
    x = torch.zeros(100)
    assert probe(lambda: x.view(10, 10).exp_()) == 0


@pytest.mark.parametrize("probe", PROBES)
def test_sees_the_score_matrix_and_its_absence(probe):
    q, k, v = (random_tensor(s, 1, 2, 256, 8) for s in range(3))
    scores = 2 * score_matrix_bytes(256)  # two heads
    with torch.no_grad():
        naive = probe(lambda: reference_attention(q, k, v, causal=True))
        tiled = probe(lambda: flash_attention(q, k, v, causal=True, block_size=32))
    assert naive >= 2 * scores  # scores and weights are alive together
    assert tiled < scores // 4


@pytest.mark.parametrize("causal", [False, True])
def test_the_probes_agree_on_code_made_of_operators(causal):
    q, k, v = (random_tensor(s, 1, 4, 300, 16) for s in range(3))
    calls = [
        lambda: reference_attention(q, k, v, causal=causal),
        lambda: flash_attention(q, k, v, causal=causal, block_size=64),
    ]
    with torch.no_grad():
        for call in calls:
            assert peak_allocated_bytes(call) == peak_tensor_bytes(call)


def test_only_the_allocator_sees_the_fused_kernels_workspace():
    q, k, v = (random_tensor(s, 1, 4, 512, 64) for s in range(3))
    output_bytes = q.numel() * q.element_size()

    def fused():
        return F.scaled_dot_product_attention(q, k, v, is_causal=True)

    with torch.no_grad():
        fused()  # the first call may pick a kernel and allocate once
        tensors = peak_tensor_bytes(fused)
        allocated = peak_allocated_bytes(fused)
    assert tensors >= output_bytes  # the output (and the kernel's row statistics)
    assert allocated > tensors  # plus a workspace inside the kernel
    assert allocated < 2 * score_matrix_bytes(512)  # but no score matrix


def test_fused_kernel_memory_grows_linearly():
    def fused_peak(t: int) -> int:
        q, k, v = (random_tensor(s, 1, 2, t, 32) for s in range(3))
        with torch.no_grad():
            return peak_allocated_bytes(
                lambda: F.scaled_dot_product_attention(q, k, v, is_causal=True)
            )

    assert fused_peak(2048) < 2.5 * fused_peak(1024)


def test_profiler_log_lines_stay_out_of_stderr_but_fn_output_does_not(capfd):
    def noisy():
        os.write(2, b"written by fn\n")
        return torch.ones(10)

    assert peak_allocated_bytes(noisy) == 40
    err = capfd.readouterr().err
    assert err == "written by fn\n"


def test_stderr_is_restored_after_an_exception(capfd):
    def failing():
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        peak_allocated_bytes(failing)
    os.write(2, b"still here\n")
    assert capfd.readouterr().err == "still here\n"


@needs_cuda
def test_cuda_peak_counts_new_allocations():
    before = torch.ones(1 << 20, device="cuda")  # held before: not counted
    peak = peak_allocated_bytes(lambda: torch.empty(1 << 18, device="cuda"), device="cuda")
    assert peak == (1 << 18) * 4
    del before


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda: peak_tensor_bytes(3), TypeError, "fn must be a function of no arguments, got int"),
        (lambda: peak_allocated_bytes("x"), TypeError, "fn must be a function .* got str"),
        (
            lambda: peak_allocated_bytes(lambda: None, device="meta"),
            ValueError,
            "device must be 'cpu' or a CUDA device, got 'meta'",
        ),
        (
            lambda: peak_allocated_bytes(lambda: None, device="gpu0"),
            ValueError,
            "device must be 'cpu' or a CUDA device, got 'gpu0'",
        ),
    ],
)
def test_rejects_bad_input(call, error, match):
    with pytest.raises(error, match=match):
        call()


@pytest.mark.skipif(
    torch.cuda.is_available(), reason="checks the message on a machine without CUDA"
)
def test_cuda_without_a_device_is_a_clear_error():
    with pytest.raises(ValueError, match="device is 'cuda', but this machine has no CUDA device"):
        peak_allocated_bytes(lambda: None, device="cuda")


# The CPU probe reads profiler events torch does not document: a torch that
# changes them must give a clear error, never a wrong number or a warning.


@pytest.fixture
def fresh_probe(monkeypatch):
    """The probe's once-per-process self-check, run again inside the test."""
    check = memory._cpu_probe_error
    monkeypatch.setattr(memory, "_cpu_probe_error", functools.cache(check.__wrapped__))


class _NoEvents:
    """A profiler whose results no longer have the events the probe reads."""

    def __init__(self, *args, **kwargs):
        self.profiler = SimpleNamespace(kineto_results=SimpleNamespace())

    def start(self):
        pass

    def stop(self):
        pass


def test_a_profiler_without_the_events_is_a_clear_error(monkeypatch, fresh_probe):
    monkeypatch.setattr(memory, "profile", _NoEvents)
    with pytest.raises(
        RuntimeError, match=r"peak_allocated_bytes\(device='cpu'\).*peak_tensor_bytes"
    ):
        peak_allocated_bytes(lambda: torch.empty(250))


def test_a_profiler_whose_events_changed_meaning_is_an_error_not_a_number(monkeypatch, fresh_probe):
    read = memory._cpu_memory_events
    monkeypatch.setattr(
        memory, "_cpu_memory_events", lambda prof: [(t, 2 * b) for t, b in read(prof)]
    )
    with pytest.raises(RuntimeError, match="a 4000-byte allocation read as 8000 bytes"):
        peak_allocated_bytes(lambda: torch.empty(250))


def test_the_profilers_own_warnings_do_not_reach_the_caller(monkeypatch, fresh_probe):
    real = memory.profile

    class Chatty(real):  # type: ignore[misc, valid-type]
        def start(self):
            warnings.warn(
                "Profiler clears events at the end of each cycle", UserWarning, stacklevel=2
            )
            super().start()

    monkeypatch.setattr(memory, "profile", Chatty)
    # filterwarnings = error (pyproject): a warning that got out would fail here.
    assert peak_allocated_bytes(lambda: torch.empty(250)) == 1000
    with pytest.warns(UserWarning, match="from fn"):  # fn's own warnings still show
        peak_allocated_bytes(lambda: warnings.warn("from fn", UserWarning, stacklevel=2))
