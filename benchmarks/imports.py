"""Suite ``imports``: what ``import attention`` adds to ``import torch``.

Two programs run in fresh interpreters, taking turns: ``import torch`` and
``import torch; import attention``. Each times its own imports, by CPU and
wall-clock time (so interpreter start-up stays out), and reports the
modules the package added. The cost of the package is the time from the end
of ``import torch`` to the end of ``import attention`` in the same process,
fastest of the runs: exactly what the package adds, without the noise of
importing torch (which varies by more than that between runs on a busy
machine). The difference of the two programs' fastest totals is kept as a
cross-check. The child processes import this checkout's ``src``, whatever
else is installed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import asdict, dataclass

from benchmarks import common
from benchmarks.common import ROOT, Record, Settings

PROGRAMS = {
    "torch": "import torch",
    "torch+attention": "import torch; import attention",
}
_CHILD = """
import json, sys, time
wall, cpu = [time.perf_counter()], [time.process_time()]
import torch
wall.append(time.perf_counter()); cpu.append(time.process_time())
before = set(sys.modules)
{extra}
wall.append(time.perf_counter()); cpu.append(time.process_time())
added = sorted({{m.split(".")[0] for m in set(sys.modules) - before}})
print(json.dumps({{"wall": wall, "cpu": cpu, "added": added}}))
"""
# Modules the package must not pull in at import: they cost seconds or are optional.
HEAVY = ("matplotlib", "IPython", "ipywidgets", "pandas", "scipy", "hypothesis")


@dataclass(frozen=True)
class Plan:
    """What a mode measures."""

    repeats: int  # runs of each program


PLANS = {"full": Plan(7), "quick": Plan(3), "tiny": Plan(1)}


def child_source(program: str) -> str:
    """The source the child interpreter runs for ``program``."""
    extra = "import attention" if program == "torch+attention" else "pass"
    return _CHILD.format(extra=extra)


def run_child(program: str, threads: int) -> Record:
    """Run one program in a fresh interpreter; return its own timings and the wall time."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT / "src"), env.get("PYTHONPATH")]))
    env["OMP_NUM_THREADS"] = str(threads)
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", child_source(program)],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    wall = time.perf_counter() - start
    result: Record = json.loads(done.stdout.strip().splitlines()[-1])
    result["wall_s"] = wall
    return result


def run(settings: Settings) -> Record:
    """Run the suite; return its payload (also written to ``settings.out``)."""
    plan = PLANS[settings.mode]

    def measure(payload: Record) -> None:
        payload["settings"] = {"plan": asdict(plan), "programs": PROGRAMS}
        runs: dict[str, list[Record]] = {name: [] for name in PROGRAMS}
        for _ in range(plan.repeats):
            for name in PROGRAMS:
                runs[name].append(run_child(name, settings.threads))
        clock = common.clock_for(settings.threads)

        def timing(name: str, first: int, last: int) -> common.Timing:
            """The time from mark ``first`` to mark ``last`` in each run of ``name``."""
            return common.Timing(
                wall=[r["wall"][last] - r["wall"][first] for r in runs[name]],
                cpu=[r["cpu"][last] - r["cpu"][first] for r in runs[name]],
                clock=clock,
            )

        records = [
            {
                "variant": name,
                "label": program,
                **common.timing_fields(timing(name, 0, 2)),
                "after_torch": common.timing_fields(timing(name, 1, 2)),
                "process_wall_s": [r["wall_s"] for r in runs[name]],
                "added_modules": runs[name][0]["added"],
            }
            for name, program in PROGRAMS.items()
        ]
        torch_only, both = records
        payload["groups"] = [
            {
                "group": "imports",
                "baseline": "torch",
                "records": records,
                "cost_s": both["after_torch"]["min_s"],
                "wall_cost_s": both["after_torch"]["wall_min_s"],
                "difference_of_minima_s": both["min_s"] - torch_only["min_s"],
                "heavy_modules": sorted(set(both["added_modules"]) & set(HEAVY)),
            }
        ]

    payload = common.run_suite("imports", settings, measure, peak_gemm=None)
    payload["targets"] = [
        common.target(
            "import attention: time on top of import torch, ms",
            1e3 * payload["groups"][0]["cost_s"],
            50.0,
            at_most=True,
            where=f"fastest of {plan.repeats} fresh interpreters",
            wall=1e3 * payload["groups"][0]["wall_cost_s"],
        )
    ]
    print_tables(payload)
    common.write_json(payload, settings.out)
    return payload


def print_tables(payload: Record) -> None:
    """Print the two programs' times."""
    group = payload["groups"][0]
    rows = [
        [
            r["label"],
            r["min_s"] * 1e3,
            r["median_s"] * 1e3,
            r["wall_min_s"] * 1e3,
            min(r["process_wall_s"]) * 1e3,
            len(r["times_s"]),
        ]
        for r in group["records"]
    ]
    print()
    headers = ["program", "min ms", "median ms", "wall min ms", "process wall min ms", "runs"]
    print(common.table(headers, rows))
    print(f"(min and median: {group['records'][0]['clock']} time in the imports)")
    both = group["records"][1]
    print(
        f"import attention costs {group['cost_s'] * 1e3:.1f} ms on top of import torch "
        f"(fastest run; difference of the fastest totals: "
        f"{group['difference_of_minima_s'] * 1e3:.0f} ms); "
        f"modules it adds: {', '.join(both['added_modules'])}; "
        f"heavy ones: {', '.join(group['heavy_modules']) or 'none'}"
    )
