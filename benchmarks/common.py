"""What every suite shares: settings, timing, memory, machine facts and result files.

Timing rules, the same for every suite:

* every candidate runs once before it is timed (a warm-up: first calls
  allocate memory and choose kernels);
* candidates take turns, A B C A B C ..., so that a burst of load from other
  work on the machine hits all of them alike;
* each candidate's minimum is its time (the run least disturbed by other
  work); the median is kept as well; a ratio always divides two minima
  measured in the same group of the same run;
* with one thread (the default), the time of a run is the CPU time the
  process spent in it, user and system (``time.process_time``): the
  wall-clock time minus the time the thread waited for a core while other
  work held it, which is the part that varies from run to run on a shared
  machine. Wall-clock times are recorded next to it, with their own ratios.
  With more threads the wall-clock time counts (CPU time would add the
  threads up).

Peak FLOP/s is not a datasheet figure: it is the best rate of a large float32
matrix product measured in the same run (:func:`measure_peak_flops`), the
most this machine delivered to PyTorch at that moment.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import platform
import statistics
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch

from attention.memory import peak_allocated_bytes

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
SCHEMA_VERSION = 1
GIB = 2**30

Mode = Literal["full", "quick", "tiny"]
Record = dict[str, Any]


@dataclass(frozen=True)
class Settings:
    """How a run is configured; every suite receives the same one.

    Attributes:
        mode: ``"full"`` (``make bench``), ``"quick"`` (a smoke run of a minute
            or two) or ``"tiny"`` (toy sizes, for the tests).
        threads: ``torch.set_num_threads`` for every measurement.
        out: The folder the JSON and SVG files go to.
    """

    mode: Mode
    threads: int
    out: Path


@contextlib.contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run the block with ``torch.set_num_threads(n)``, then restore the old count."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


Clock = Literal["cpu", "wall"]


CLOCK_NAMES = {
    "cpu": "CPU time of this process (one thread: wall-clock time minus waits for a core)",
    "wall": "wall-clock time",
}


def clock_for(threads: int) -> Clock:
    """The clock that counts: CPU time on one thread, wall-clock time on more."""
    return "cpu" if threads == 1 else "wall"


@dataclass(frozen=True)
class Timing:
    """One candidate's runs: wall-clock and CPU seconds of each, and which clock counts."""

    wall: list[float]
    cpu: list[float]
    clock: Clock

    @property
    def times(self) -> list[float]:
        """The seconds of the clock that counts, one per run."""
        return self.cpu if self.clock == "cpu" else self.wall

    @property
    def best(self) -> float:
        """The fastest run by the clock that counts."""
        return min(self.times)


def time_interleaved(
    candidates: Mapping[str, Callable[[], object]],
    *,
    repeats: int | Mapping[str, int],
    warmup: bool = True,
) -> dict[str, Timing]:
    """Seconds of each candidate's runs, the candidates taking turns.

    Args:
        candidates: Name -> function of no arguments.
        repeats: Timed runs per candidate; a mapping gives each its own count
            (a candidate with fewer runs drops out of the later rounds).
        warmup: Run every candidate once, untimed, first. Default: ``True``.

    Returns:
        Name -> its :class:`Timing`, runs in the order measured; CPU time
        counts if torch runs on one thread, wall-clock time otherwise.
    """
    counts = {n: repeats if isinstance(repeats, int) else repeats[n] for n in candidates}
    if warmup:
        for fn in candidates.values():
            fn()
    wall: dict[str, list[float]] = {name: [] for name in candidates}
    cpu: dict[str, list[float]] = {name: [] for name in candidates}
    for round_ in range(max(counts.values(), default=0)):
        for name, fn in candidates.items():
            if round_ < counts[name]:
                cpu_start, wall_start = time.process_time(), time.perf_counter()
                fn()
                wall[name].append(time.perf_counter() - wall_start)
                cpu[name].append(time.process_time() - cpu_start)
    clock = clock_for(torch.get_num_threads())
    return {name: Timing(wall[name], cpu[name], clock) for name in candidates}


def timing_fields(timing: Timing) -> Record:
    """The JSON fields of one candidate's runs: by the clock that counts, then both clocks."""
    fields: Record = {"clock": timing.clock, **_stats("", timing.times)}
    fields.update(_stats("wall_", timing.wall))
    fields.update(_stats("cpu_", timing.cpu))
    return fields


def _stats(prefix: str, times: Sequence[float]) -> Record:
    return {
        f"{prefix}times_s": [float(t) for t in times],
        f"{prefix}min_s": float(min(times)),
        f"{prefix}median_s": float(statistics.median(times)),
    }


def peak_bytes(fn: Callable[[], object]) -> int:
    """Peak bytes the allocator held during ``fn()`` (``peak_allocated_bytes``)."""
    return peak_allocated_bytes(fn)


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    """``numerator / denominator``, or ``None`` when either is missing."""
    if numerator is None or denominator is None or denominator == 0:
        return None
    return numerator / denominator


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo, else what ``platform`` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:  # not Linux: /proc/cpuinfo does not exist
        pass
    return platform.processor() or platform.machine()


def machine_info(threads: int) -> Record:
    """Where and when a run happened: CPU, cores, threads, versions, date, load."""
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # sched_getaffinity exists on Linux only
        usable = os.cpu_count() or 1
    return {
        "cpu": cpu_model(),
        "machine": platform.machine(),
        "logical_cpus": os.cpu_count(),
        "usable_cpus": usable,
        "torch_threads": threads,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "system": platform.platform(),
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }


def measure_peak_flops(*, size: int, repeats: int) -> Record:
    """The best rate of a float32 (size, size) @ (size, size) product, in FLOP/s.

    Args:
        size: n, the side of the square matrices.
        repeats: Timed runs; the fastest counts.

    Returns:
        A record with the FLOPs of one product (``2 n^3``), its times and
        ``flop_per_s`` for the fastest.
    """
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(2, size, size, generator=g)
    timing = time_interleaved({"gemm": lambda: a @ b}, repeats=repeats)["gemm"]
    flops = 2 * size**3
    return {"n": size, "flops": flops, **timing_fields(timing), "flop_per_s": flops / timing.best}


def peak_record(start: Record, end: Record) -> Record:
    """The run's peak: the better of the matrix products timed at its start and its end."""
    n = start["n"]
    return {
        "what": f"best float32 ({n}, {n}) @ ({n}, {n}) matrix product in this run",
        "flop_per_s": max(start["flop_per_s"], end["flop_per_s"]),
        "at_start": start,
        "at_end": end,
    }


def flop_fields(flops: int, seconds: float | None) -> Record:
    """FLOPs and achieved FLOP/s (the fraction of peak is added at the end of the run)."""
    return {"flops": flops, "flop_per_s": ratio(flops, seconds)}


def add_peak_fractions(payload: Record) -> None:
    """Set ``fraction_of_peak`` next to every ``flop_per_s`` in the payload's groups."""
    peak = payload["peak"]["flop_per_s"]

    def visit(node: object) -> None:
        if isinstance(node, dict):
            if "flop_per_s" in node:
                node["fraction_of_peak"] = ratio(node["flop_per_s"], peak)
            for value in node.values():
                visit(value)
        elif isinstance(node, list):
            for value in node:
                visit(value)

    visit(payload["groups"])


def new_payload(suite: str, settings: Settings) -> Record:
    """The common head of a suite's JSON file (``peak`` is filled in at the end)."""
    return {
        "suite": suite,
        "schema_version": SCHEMA_VERSION,
        "mode": settings.mode,
        "machine": machine_info(settings.threads),
        "peak": None,
        "settings": {},
        "groups": [],
        "targets": [],
    }


def target(
    name: str,
    measured: float | None,
    limit: float,
    *,
    at_most: bool,
    where: str,
    wall: float | None = None,
) -> Record:
    """One target: what it says, the measured value, the limit and whether it holds.

    ``wall`` is the same quantity by the wall clock, recorded for comparison
    when ``measured`` comes from CPU times.
    """
    passed = measured is not None and (measured <= limit if at_most else measured >= limit)
    return {
        "target": name,
        "where": where,
        "measured": measured,
        "wall_clock": wall,
        "limit": limit,
        "comparison": "<=" if at_most else ">=",
        "passed": passed,
    }


def write_json(payload: Record, out: Path) -> Path:
    """Write a suite's payload to ``out/<suite>.json`` (end time and load added)."""
    payload["machine"]["finished"] = datetime.datetime.now(datetime.UTC).isoformat(
        timespec="seconds"
    )
    if hasattr(os, "getloadavg"):
        payload["machine"]["load_average_at_end"] = list(os.getloadavg())
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{payload['suite']}.json"
    path.write_text(json.dumps(payload, indent=1) + "\n", encoding="utf-8")
    return path


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A plain-text table: numbers right-aligned, text left-aligned.

    Text columns are the first one and any whose values are all strings.
    """
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(headers)]
    text = [i == 0 or all(isinstance(row[i], str) for row in rows) for i in range(len(headers))]

    def line(values: Sequence[str]) -> str:
        return "  ".join(
            v.ljust(w) if left else v.rjust(w)
            for v, w, left in zip(values, widths, text, strict=True)
        ).rstrip()

    return "\n".join([line(headers), line(["-" * w for w in widths]), *map(line, cells)])


def _cell(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 1000 else f"{value:,.0f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def header(title: str, settings: Settings, payload: Record) -> str:
    """The lines printed above a suite's tables."""
    m = payload["machine"]
    return "\n".join(
        [
            "",
            f"== {title} ({settings.mode}) ==",
            f"{m['cpu']}, {m['usable_cpus']} CPUs, torch {m['torch']}, "
            f"{settings.threads} thread(s), {m['date']}, load average {m['load_average']}",
            f"times below: {CLOCK_NAMES[clock_for(settings.threads)]}; "
            "the JSON file has both clocks",
        ]
    )


def peak_line(payload: Record) -> str:
    """How the run's peak FLOP/s was measured, for the printout."""
    peak = payload["peak"]
    return (
        f"% of peak: achieved FLOP/s / {peak['flop_per_s'] / 1e9:.1f} GFLOP/s, the {peak['what']} "
        "(measured, not a datasheet figure); FLOPs are the model's: 2 per multiply-add, "
        "causal pairs only, backward counted as twice the forward"
    )


def run_suite(
    suite: str,
    settings: Settings,
    measure: Callable[[Record], None],
    *,
    peak_gemm: int | None,
) -> Record:
    """The frame of every suite: header, peak FLOP/s before and after, then ``measure``.

    Args:
        suite: The suite's name, also its JSON file's name.
        settings: The run's settings.
        measure: Fills the payload's ``settings`` and ``groups``.
        peak_gemm: Side of the matrix product that measures peak FLOP/s, or
            ``None`` for a suite that counts no FLOPs.

    Returns:
        The payload, with ``peak`` and every ``fraction_of_peak`` filled in.
    """
    payload = new_payload(suite, settings)
    print(header(suite, settings, payload), flush=True)
    started = time.perf_counter()
    with torch_threads(settings.threads):
        first = measure_peak_flops(size=peak_gemm, repeats=10) if peak_gemm else None
        measure(payload)
        last = measure_peak_flops(size=peak_gemm, repeats=10) if peak_gemm else None
    if first is not None and last is not None:
        payload["peak"] = peak_record(first, last)
        add_peak_fractions(payload)
    payload["machine"]["suite_seconds"] = time.perf_counter() - started
    return payload


def progress(message: str) -> None:
    """One line of progress while a suite runs."""
    print(f"  {time.strftime('%H:%M:%S')} {message}", flush=True)
