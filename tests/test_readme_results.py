"""README's tables of results say what benchmarks/results/ holds.

README.md cannot glue numbers from a cell as the book does, so its tables are
typed; these tests read each table and the JSON file it reports, and require
every number to be the JSON's value rounded to the digits the table shows
(and every limit and row to be there), so that a new run of a benchmark
cannot leave the README describing an old one.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
_NUMBER = re.compile(r"\d[\d,]*(?:\.(\d+))?")


def _table(header: str) -> list[list[str]]:
    """The rows of README's table whose header row starts with ``| header |``."""
    lines = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    starts = [i for i, line in enumerate(lines) if line.startswith(f"| {header} |")]
    assert len(starts) == 1, f"expected one README table headed {header!r}, found {len(starts)}"
    rows = []
    for line in lines[starts[0] + 2 :]:  # past the header and its --- row
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip("|").split("|")])
    return rows


def _results(suite: str) -> Any:
    return json.loads((RESULTS / f"{suite}.json").read_text(encoding="utf-8"))


def _shows(cell: str, value: float) -> bool:
    """Whether the first number in ``cell`` is ``value`` rounded to the digits shown."""
    match = _NUMBER.search(cell)
    assert match, f"no number in {cell!r}"
    decimals = len(match.group(1) or "")
    shown = float(match.group(0).replace(",", ""))
    return abs(shown - value) <= 0.5 * 10**-decimals + 1e-9


def test_the_targets_table_is_the_committed_run():
    targets = _results("targets")["targets"]
    rows = _table("Target")
    assert len(rows) == len(targets)
    for row, target in zip(rows, targets, strict=True):
        _, _, measured, limit = row
        assert _shows(measured, target["measured"]), (row, target["measured"])
        symbol = {"<=": "≤", ">=": "≥"}[target["comparison"]]
        assert limit.startswith(symbol), (row, target["comparison"])
        assert _shows(limit, target["limit"]), (row, target["limit"])
        assert ("not met" in measured) == (not target["passed"]), (row, target["passed"])


def test_the_gpt2_table_is_the_committed_run():
    groups = {g["group"]: g for g in _results("hf_gpt2")["groups"]}
    rows = _table("Row")
    names = {
        "CPU float32 forward": "cpu float32 forward",
        "CPU float32 cached greedy generation": "cpu float32 generate",
        "CPU bfloat16 forward": "cpu bfloat16 forward",
        "CPU bfloat16 cached greedy generation": "cpu bfloat16 generate",
    }
    assert [row[0] for row in rows] == list(names)
    for name, manual, sdpa in rows:
        records = {r["variant"]: r for r in groups[names[name]]["records"]}
        assert _shows(manual, records["ours (manual)"]["ratio_to_transformers"]), (name, manual)
        assert _shows(sdpa, records["ours (sdpa)"]["ratio_to_transformers"]), (name, sdpa)


def test_the_build_times_table_is_the_committed_run():
    steps = _results("build")["steps"]
    rows = _table("Build")
    assert len(rows) == len(steps)
    cold = steps[0]["wall_s"]
    for row, step in zip(rows, steps, strict=True):
        _, wall, share, _ = row
        assert _shows(wall, step["wall_s"]), (row, step["wall_s"])
        assert _shows(share, 100 * step["wall_s"] / cold), (row, step["wall_s"] / cold)


@pytest.mark.parametrize(("cell", "value", "expected"), [
    ("1.21", 1.2080, True), ("1.21", 1.2160, False), ("6.1 ms", 6.0994, True),
    ("45 %", 45.46, True), ("46 %", 45.46, False), ("9.2×", 9.226, True),
    ("0.020", 0.02036, True), ("1,024", 1024.0, True),
])  # fmt: skip
def test_a_cell_shows_a_value_rounded_to_its_digits(cell, value, expected):
    assert _shows(cell, value) is expected
