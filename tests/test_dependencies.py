"""``pip install attention-from-scratch`` brings torch alone, and that is enough.

pyproject.toml declares torch as the package's only dependency; matplotlib
comes with the ``viz`` extra, for the functions that draw figures. Torch does
not need numpy, so neither may the package: these tests import every module
in an interpreter where numpy and matplotlib cannot be imported.
"""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# Runs in a fresh interpreter: numpy and matplotlib raise ImportError there.
_WITHOUT_EXTRAS = """
import importlib, pkgutil, sys
sys.modules["numpy"] = None
sys.modules["matplotlib"] = None
import attention
failed = []
for module in pkgutil.walk_packages(attention.__path__, "attention."):
    try:
        importlib.import_module(module.name)
    except ImportError as error:
        failed.append(f"{module.name}: {error}")
print("\\n".join(failed) or "all imported")
"""

_MODEL_LAB_ROUND_TRIP = """
import sys
sys.modules["numpy"] = None
import torch
from attention.induction import AttentionOnlyTransformer, InductionConfig
from attention.model_lab import export_weights, import_weights
torch.manual_seed(0)
model = AttentionOnlyTransformer(InductionConfig(vocab_size=8, context_length=6))
again = import_weights(export_weights(model))
pairs = zip(model.state_dict().values(), again.state_dict().values())
same = all(torch.equal(a, b) for a, b in pairs)  # exact: float32 bytes copied back
print("same" if same else "different")
"""


# Each function that draws a static figure, called without matplotlib.
_FIGURES_WITHOUT_MATPLOTLIB = """
import sys
sys.modules["matplotlib"] = None
import torch
from attention.heads import head_grid_figure
from attention.induction import AttentionOnlyTransformer, InductionConfig
from attention.kv_chart import kv_budget_figure
from attention.viz import heatmap
model = AttentionOnlyTransformer(InductionConfig(vocab_size=8, context_length=6))
calls = {
    "heatmap": lambda: heatmap(torch.eye(3)),
    "head_grid_figure": lambda: head_grid_figure(model, torch.arange(4)),
    "kv_budget_figure": lambda: kv_budget_figure(),
}
for name, call in calls.items():
    try:
        call()
    except ModuleNotFoundError as error:
        print(name, "|", error)
"""


def _run(script: str) -> str:
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False,
        cwd=ROOT,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout.strip()


def test_torch_is_the_only_dependency():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert [d.split(">")[0].split("=")[0] for d in project["dependencies"]] == ["torch"]
    assert project["optional-dependencies"]["viz"] == ["matplotlib>=3.7"]


def test_every_module_imports_without_numpy_or_matplotlib():
    assert _run(_WITHOUT_EXTRAS) == "all imported"


def test_the_model_lab_export_round_trips_without_numpy():
    assert _run(_MODEL_LAB_ROUND_TRIP) == "same"


def test_drawing_without_matplotlib_names_the_viz_extra():
    lines = _run(_FIGURES_WITHOUT_MATPLOTLIB).splitlines()
    assert [line.split(" | ")[0] for line in lines] == [
        "heatmap", "head_grid_figure", "kv_budget_figure",
    ]  # fmt: skip
    for line in lines:
        name, message = line.split(" | ")
        assert message == (
            f"{name} draws with matplotlib, which is not installed: "
            'pip install "attention-from-scratch[viz]"'
        )
