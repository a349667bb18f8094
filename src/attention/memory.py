"""How much memory a computation needs, measured two ways (chapter 13).

* :func:`peak_tensor_bytes` watches the tensors that PyTorch operators return
  while a function runs. It needs nothing but the dispatcher, is exact and
  cheap, and shows which tensors make up the peak; but a fused kernel's
  private workspace, allocated inside C++ below the operator interface, is
  invisible to it.
* :func:`peak_allocated_bytes` asks the allocator instead: on the CPU through
  PyTorch's profiler, which records every allocation and free; on CUDA through
  the caching allocator's peak statistics. It sees workspaces too.

For code made only of ordinary operators the two agree to the byte (the tests
check this on the book's attention and on the tiled one); for
``F.scaled_dot_product_attention`` the second one is larger by the kernel's
workspace.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import os
import sys
import warnings
import weakref
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import Tensor
from torch.profiler import DeviceType, ProfilerActivity, profile

# PyTorch documents dispatch modes (``__torch_dispatch__``) but exports their
# base class only from this underscore module; there is no public spelling.
from torch.utils._python_dispatch import TorchDispatchMode

__all__ = ["peak_allocated_bytes", "peak_tensor_bytes"]


def _tensors(tree: object) -> Iterator[Tensor]:
    """The tensors in an operator's arguments or results: nested tuples, lists and dicts."""
    if isinstance(tree, Tensor):
        yield tree
    elif isinstance(tree, tuple | list):
        for item in tree:
            yield from _tensors(item)
    elif isinstance(tree, dict):
        for item in tree.values():
            yield from _tensors(item)


def _check_fn(fn: object) -> None:
    if not callable(fn):
        raise TypeError(f"fn must be a function of no arguments, got {type(fn).__name__}")


def peak_tensor_bytes(fn: Callable[[], object]) -> int:
    """Run ``fn()`` and return the most bytes its new tensors held at one time.

    Every tensor returned by a PyTorch operator inside ``fn`` is counted from
    its creation until the last tensor sharing its storage is freed. Tensors
    that existed before the call are not counted; buffers a fused kernel
    allocates internally, outside the operator interface, are invisible (use
    :func:`peak_allocated_bytes` for those). Run ``fn`` under
    ``torch.no_grad()`` to leave out what autograd would keep.

    Args:
        fn: A function of no arguments, for example ``lambda: f(q, k, v)``.

    Returns:
        Peak bytes of live new tensors, an int (the result of ``fn`` included).

    Example:
        >>> import torch
        >>> peak_tensor_bytes(lambda: torch.zeros(1000).exp())
        8000
    """
    _check_fn(fn)
    tracker = _TensorMemory()
    with tracker:
        fn()
    return tracker.peak


class _TensorMemory(TorchDispatchMode):  # type: ignore[no-untyped-call]  # torch's base is untyped
    """Counts the bytes of the storages that operators create while active."""

    def __init__(self) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.refs: dict[int, int] = {}  # storage address -> live tensors using it
        self.sizes: dict[int, int] = {}  # storage address -> bytes
        self.live = 0
        self.peak = 0

    def _release(self, key: int) -> None:
        self.refs[key] -= 1
        if self.refs[key] == 0:
            self.live -= self.sizes.pop(key)
            del self.refs[key]

    def __torch_dispatch__(
        self,
        func: Any,
        types: Any,
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
    ) -> Any:
        out = func(*args, **(kwargs or {}))
        for t in _tensors(out):
            if not isinstance(t, Tensor):
                continue
            storage = t.untyped_storage()
            key = storage.data_ptr()
            if key == 0:  # an empty tensor owns no memory
                continue
            if key not in self.refs:
                if any(a.untyped_storage().data_ptr() == key for a in _tensors((args, kwargs))):
                    continue  # an in-place op or a view of an input: nothing new
                self.refs[key] = 0
                self.sizes[key] = storage.nbytes()
                self.live += storage.nbytes()
                self.peak = max(self.peak, self.live)
            self.refs[key] += 1
            weakref.finalize(t, self._release, key)
        return out


def peak_allocated_bytes(fn: Callable[[], object], *, device: str | torch.device = "cpu") -> int:
    """Run ``fn()`` and return the most bytes the allocator held for it at once.

    Counts every allocation made on ``device`` while ``fn`` runs, including
    the workspaces that fused kernels allocate internally, from its
    allocation to its free; memory held before the call is not counted.
    On the CPU the allocations come from PyTorch's profiler (which adds some
    time to the call, not to the bytes); on CUDA from the allocator's peak
    statistics, after synchronising the device. Run ``fn`` under
    ``torch.no_grad()`` to leave out what autograd would keep.

    Args:
        fn: A function of no arguments, for example ``lambda: f(q, k, v)``.
        device: ``"cpu"`` or a CUDA device such as ``"cuda"`` or ``"cuda:1"``.

    Returns:
        Peak bytes allocated during the call, an int (the result of ``fn``
        included while it is alive).

    Raises:
        TypeError: If ``fn`` is not callable.
        ValueError: If ``device`` is neither the CPU nor a CUDA device, or
            is CUDA on a machine without one.
        RuntimeError: On the CPU, if this torch's profiler does not report
            allocations as the package reads them (they come from profiler
            events torch does not document; see the message).

    Example:
        >>> import torch
        >>> peak_allocated_bytes(lambda: torch.zeros(1000).exp())
        8000
    """
    _check_fn(fn)
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"device must be 'cpu' or a CUDA device, got {device!r}") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device is {device!r}, but this machine has no CUDA device")
        return _peak_cuda(fn, dev)
    if dev.type != "cpu":
        raise ValueError(f"device must be 'cpu' or a CUDA device, got {device!r}")
    return _peak_cpu(fn)


# One profiling cycle per call: keeping events "across cycles" changes nothing
# then, but saying so stops the torch versions that warn about dropping them
# (a UserWarning on every call) from warning. Older torch lacks the argument.
_ONE_CYCLE: dict[str, Any] = (
    {"acc_events": True} if "acc_events" in inspect.signature(profile).parameters else {}
)


def _peak_cpu(fn: Callable[[], object]) -> int:
    _check_cpu_probe()
    return _peak_of(_profiled_cpu_events(fn))


def _peak_of(events: list[tuple[int, int]]) -> int:
    live = peak = 0
    for _, nbytes in events:
        live += nbytes
        peak = max(peak, live)
    return peak


def _profiled_cpu_events(fn: Callable[[], object]) -> list[tuple[int, int]]:
    prof = profile(activities=[ProfilerActivity.CPU], profile_memory=True, **_ONE_CYCLE)
    # What the profiler itself warns about concerns its own bookkeeping (a new
    # torch may add a notice): kept out of the caller's warnings, which would
    # otherwise turn into errors under a test suite's filterwarnings. fn's own
    # warnings are not touched.
    with _quiet_native_stderr(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        prof.start()
    try:
        fn()
    finally:
        with _quiet_native_stderr(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            prof.stop()
    # One "[memory]" event per allocation (positive bytes) and per free
    # (negative bytes), in the order they happened.
    return _cpu_memory_events(prof)


def _cpu_memory_events(prof: profile) -> list[tuple[int, int]]:
    """(time in ns, bytes) of each CPU allocation (+) and free (-) the profiler saw.

    PyTorch has no public API for the CPU allocator's timeline: the profiler's
    public event list (``prof.events()``) folds each allocation into the
    operator that made it and keeps no order of allocations and frees. So
    this reads the raw Kineto events, which torch does not document; a torch
    that changes them gets a RuntimeError saying so, never a wrong number
    (:func:`_check_cpu_probe` also measures one known allocation first).
    """
    try:
        results = prof.profiler.kineto_results if prof.profiler is not None else None
        if results is None:
            raise RuntimeError("PyTorch's profiler recorded nothing; was it started?")
        cpu = DeviceType.CPU
        return sorted(
            # nbytes() exists on memory events but is missing from torch's stubs.
            (int(event.start_ns()), int(event.nbytes()))  # type: ignore[attr-defined]
            for event in results.events()
            if event.name() == "[memory]" and event.device_type() == cpu
        )
    except (AttributeError, TypeError) as error:
        raise RuntimeError(_UNREADABLE + f" ({type(error).__name__}: {error})") from error


_UNREADABLE = (
    f"peak_allocated_bytes(device='cpu') reads the allocations from PyTorch's profiler "
    f"events, which torch {torch.__version__} does not provide as this package expects; "
    f"use peak_tensor_bytes, or peak_allocated_bytes on a CUDA device"
)


@functools.cache
def _cpu_probe_error() -> str | None:
    """Why the CPU probe cannot be trusted on this torch, or None if it can.

    Measures one allocation of a known size (4000 bytes): a profiler whose
    events changed meaning would read another number here.
    """
    try:
        peak = _peak_of(_profiled_cpu_events(lambda: torch.empty(1000)))
    except RuntimeError as error:
        return str(error)
    if peak != 4000:
        return f"{_UNREADABLE} (a 4000-byte allocation read as {peak} bytes)"
    return None


def _check_cpu_probe() -> None:
    error = _cpu_probe_error()
    if error is not None:
        raise RuntimeError(error)


def _peak_cuda(fn: Callable[[], object], device: torch.device) -> int:
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    before = torch.cuda.memory_allocated(device)
    fn()
    torch.cuda.synchronize(device)
    return int(torch.cuda.max_memory_allocated(device)) - before


@contextlib.contextmanager
def _quiet_native_stderr() -> Iterator[None]:
    """Send C++ writes to file descriptor 2 to /dev/null for the block.

    PyTorch's profiler library logs a line to the process's stderr each time
    it starts and stops. In a notebook those lines would land in the cell's
    output, so they are dropped, for the start and stop calls only: anything
    ``fn`` itself writes to stderr still shows.
    """
    sys.stderr.flush()
    try:
        saved = os.dup(2)
    except OSError:  # no stderr at all (a closed descriptor): nothing to silence
        yield
        return
    try:
        with open(os.devnull, "wb") as devnull:
            os.dup2(devnull.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
