"""``python -m benchmarks``: run the suites, print tables, write JSON and SVG files.

Run it from the repository root (``make bench`` does). ``--quick`` is a
smoke run of a minute or two at smaller sizes; the default, full run takes
about eight minutes of CPU time, and longer in wall-clock time on a machine
busy with other work.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from benchmarks import targets
from benchmarks.common import RESULTS, ROOT, Mode, Record, Settings

SUITES = ("imports", "kernels", "layers", "generation")


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    """The command line's options."""
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Time and memory of the package's attention against PyTorch's.",
    )
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="a smoke run at smaller sizes")
    size.add_argument("--tiny", action="store_true", help="toy sizes, seconds (for the tests)")
    parser.add_argument(
        "--suite",
        action="append",
        choices=SUITES,
        help="run only this suite (repeat for several); default: all",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help=(
            "torch threads (default 1: on a shared machine a second thread is often "
            "descheduled, and every parallel operation then waits for it)"
        ),
    )
    parser.add_argument(
        "--out",
        type=Path,
        help="folder for the JSON and SVG files (default: benchmarks/results for a full "
        "run, _build/benchmarks/<mode> otherwise)",
    )
    parser.add_argument(
        "--check", action="store_true", help="exit with status 1 if a target does not hold"
    )
    parser.add_argument(
        "--replot",
        action="store_true",
        help="measure nothing: redraw the SVG plots from the JSON files already in the folder",
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the chosen suites in order, then print the targets table (or only replot)."""
    args = parse(argv)
    mode: Mode = "quick" if args.quick else "tiny" if args.tiny else "full"
    out = args.out or (RESULTS if mode == "full" else ROOT / "_build" / "benchmarks" / mode)
    if args.threads < 1:
        raise SystemExit("--threads must be at least 1")
    settings = Settings(mode=mode, threads=args.threads, out=out)
    from benchmarks import plots  # matplotlib only when plotting

    if args.replot:
        for name in args.suite or SUITES:
            saved = json.loads((out / f"{name}.json").read_text(encoding="utf-8"))
            written = plots.PLOTTERS[name](saved, out)
            print(f"redrew {', '.join(p.name for p in written)} from {out / (name + '.json')}")
        return 0
    start = time.perf_counter()
    payloads: list[Record] = []
    for name in args.suite or SUITES:
        module = importlib.import_module(f"benchmarks.{name}")
        payload: Record = module.run(settings)
        written = plots.PLOTTERS[name](payload, out)
        print(f"wrote {out / (name + '.json')} and {', '.join(p.name for p in written)}")
        payloads.append(payload)
    ok = targets.report(payloads, settings, time.perf_counter() - start)
    return 1 if args.check and not ok else 0


if __name__ == "__main__":
    sys.exit(main())
