"""pyproject.toml's lower bound on torch is the oldest torch CI tests the package on."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]


def _floor() -> str:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    (requirement,) = [d for d in project["dependencies"] if re.match(r"torch\b", d)]
    match = re.fullmatch(r"torch>=(\d+\.\d+)", requirement)
    assert match, f"expected torch>=X.Y in pyproject.toml, got {requirement!r}"
    return match.group(1)


def _rows() -> list[dict[str, str]]:
    ci = yaml.safe_load((ROOT / ".github" / "workflows" / "ci.yml").read_text(encoding="utf-8"))
    job = ci["jobs"]["torch-versions"]
    steps = {s["name"]: s["run"] for s in job["steps"] if "run" in s}
    assert steps["Package tests"].startswith("make test-package ")
    assert 'TORCH_SPEC="${{ matrix.torch }}"' in steps["Package tests"]
    return job["strategy"]["matrix"]["include"]


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", text.split("+")[0])[:2])


def test_ci_runs_the_floor_and_the_newest_torch():
    specs = [row["torch"] for row in _rows()]
    pinned = [s for s in specs if s.startswith("torch==")]
    assert "torch" in specs, "one row must install the newest torch (a bare 'torch')"
    oldest = min(pinned, key=lambda s: _version(s.removeprefix("torch==")))
    assert _version(oldest.removeprefix("torch==")) == _version(_floor())


def test_the_book_keeps_its_pinned_torch_above_the_floor():
    lines = (ROOT / "requirements" / "torch.txt").read_text(encoding="utf-8").splitlines()
    (pin,) = [line for line in lines if line.startswith("torch==")]
    assert _version(pin.removeprefix("torch==")) >= _version(_floor())


def test_this_torch_is_not_below_the_floor():
    assert _version(torch.__version__) >= _version(_floor())
