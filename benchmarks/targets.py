"""The issue's targets, gathered from the suites of one run into one table."""

from __future__ import annotations

import json
from collections.abc import Sequence

from benchmarks import common
from benchmarks.common import Record, Settings


def gather(payloads: Sequence[Record]) -> list[Record]:
    """Every target of every payload, each tagged with its suite."""
    return [{"suite": p["suite"], **t} for p in payloads for t in p["targets"]]


def report(payloads: Sequence[Record], settings: Settings, elapsed_s: float) -> bool:
    """Print the targets table, write ``targets.json``; return whether all targets hold."""
    found = gather(payloads)
    rows = [
        [
            t["target"],
            t["where"],
            t["measured"],
            f"{t['comparison']} {t['limit']:.3g}",
            "PASS" if t["passed"] else "FAIL",
            t["wall_clock"],
        ]
        for t in found
    ]
    machine = payloads[0]["machine"] if payloads else common.machine_info(settings.threads)
    print("\n== targets ==")
    print(
        f"{machine['cpu']}, torch {machine['torch']}, {settings.threads} thread(s), "
        f"mode {settings.mode}, {elapsed_s / 60:.1f} min in all; every ratio divides "
        "two minima measured in the same run"
    )
    if settings.mode != "full":
        print(
            f"({settings.mode} run: smaller sizes than the targets name; `make bench` checks them)"
        )
    print(common.table(["target", "where", "measured", "limit", "", "wall clock"], rows))
    if settings.threads == 1:
        print(
            "measured: from CPU times (one thread: wall-clock time minus the time spent waiting "
            "for a core); wall clock: the same ratio from wall-clock times, for comparison"
        )
    summary = {
        "schema_version": common.SCHEMA_VERSION,
        "mode": settings.mode,
        "machine": machine,
        "elapsed_s": elapsed_s,
        "targets": found,
    }
    settings.out.mkdir(parents=True, exist_ok=True)
    (settings.out / "targets.json").write_text(
        json.dumps(summary, indent=1) + "\n", encoding="utf-8"
    )
    return all(t["passed"] for t in found)
