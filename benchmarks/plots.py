"""SVG plots of the suites' results, written next to their JSON files.

Each figure shows the measured quantity and, below it, the same quantity as
a ratio to the suite's baseline measured in the same run
(``nn.MultiheadAttention`` on its SDPA path for layers,
``F.scaled_dot_product_attention`` for kernels). The files are deterministic
for given results: no creation date, fixed SVG ids.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only, never a window

import matplotlib.pyplot as plt
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.typing import RcKeyType

from benchmarks.common import Record

_RC: dict[RcKeyType, Any] = {
    "svg.hashsalt": "attention-benchmarks",
    "svg.fonttype": "none",
    "font.size": 8,
}


def save(fig: Figure, path: Path) -> Path:
    """Write ``fig`` as SVG without a date (so equal results give equal files)."""
    with plt.rc_context(_RC):
        fig.savefig(path, format="svg", bbox_inches="tight", metadata={"Date": None})
    plt.close(fig)
    return path


def _curves(
    ax: Axes,
    groups: list[Record],
    labels: dict[str, str],
    value: Callable[[Record], float | None],
    *,
    baseline: str,
    log_y: bool,
    ratio: bool = False,
) -> None:
    tokens = [g["shape"]["tokens"] for g in groups]
    for i, (name, label) in enumerate(labels.items()):
        points = [
            (t, value(r))
            for t, g in zip(tokens, groups, strict=True)
            for r in g["records"]
            if r["variant"] == name and value(r) is not None
        ]
        if not points:
            continue
        xs, ys = zip(*points, strict=True)
        if name == baseline:
            ax.plot(xs, ys, marker="o", markersize=3, label=label, color="black", linestyle="--")
        else:  # a fixed colour per variant, the same in every panel and figure
            ax.plot(xs, ys, marker="o", markersize=3, label=label, color=f"C{i}")
    ax.set_xscale("log", base=2)
    if log_y:
        ax.set_yscale("log")
    ax.set_xticks(tokens, [str(t) for t in tokens])
    ax.minorticks_off()
    if ratio:
        _ratio_ticks(ax)
    ax.set_xlabel("context length T")
    ax.grid(alpha=0.3)


def _ratio_ticks(ax: Axes) -> None:
    """Label a logarithmic ratio axis at 1/8, 1/4, ... 1, 2, 4, ... within its range."""
    low, high = ax.get_ylim()
    ticks = [2.0**k for k in range(-10, 11) if low <= 2.0**k <= high]
    ax.set_yticks(ticks, [f"{t:g}" if t >= 1 else f"1/{1 / t:g}" for t in ticks])


def _ratio_figure(
    groups_by_pass: dict[str, list[Record]],
    labels: dict[str, str],
    *,
    baseline: str,
    absolute: tuple[str, Callable[[Record], float | None]],
    relative: tuple[str, Callable[[Record], float | None]],
    title: str,
) -> Figure:
    with plt.rc_context(_RC):
        fig, axes = plt.subplots(
            2, len(groups_by_pass), figsize=(4.6 * len(groups_by_pass), 6.4), squeeze=False
        )
        for column, (pass_, groups) in enumerate(groups_by_pass.items()):
            top, bottom = axes[0][column], axes[1][column]
            _curves(top, groups, labels, absolute[1], baseline=baseline, log_y=True)
            _curves(bottom, groups, labels, relative[1], baseline=baseline, log_y=True, ratio=True)
            top.set(title=pass_, ylabel=absolute[0])
            bottom.set(ylabel=relative[0])
        handles, names = axes[0][0].get_legend_handles_labels()
        fig.legend(handles, names, loc="lower center", ncol=2, frameon=False)
        fig.suptitle(title)
        fig.tight_layout(rect=(0, 0.1 + 0.012 * len(names), 1, 1))
    return fig


def _by_pass(payload: Record) -> dict[str, list[Record]]:
    found: dict[str, list[Record]] = {}
    for g in payload["groups"]:
        if g["group"] == "sweep":
            found.setdefault(g["pass"], []).append(g)
    return found


def _seconds(r: Record) -> float | None:
    return r.get("min_s")


def _mib(r: Record) -> float | None:
    return r["peak_bytes"] / 2**20 if "peak_bytes" in r else None


def plot_layers(payload: Record, out: Path) -> list[Path]:
    """``layers.svg`` (time) and ``layers-memory.svg`` (peak memory), each with ratios."""
    labels = payload["settings"]["variants"]
    base = labels[payload["settings"]["sweep_baseline"]]
    by_pass = _by_pass(payload)
    shape = next(iter(by_pass.values()))[0]["shape"]
    where = f"B={shape['batch']}, C={shape['width']}, H={shape['heads']}, causal"
    time_fig = _ratio_figure(
        by_pass,
        labels,
        baseline=payload["settings"]["sweep_baseline"],
        absolute=("seconds (min of repeats)", _seconds),
        relative=("time / baseline (dashed)", lambda r: r.get("time_ratio")),
        title=f"Attention layers: time ({where}); baseline {base}, same run",
    )
    memory_fig = _ratio_figure(
        by_pass,
        labels,
        baseline=payload["settings"]["sweep_baseline"],
        absolute=("peak MiB allocated", _mib),
        relative=("peak memory / baseline (dashed)", lambda r: r.get("memory_ratio")),
        title=f"Attention layers: peak memory ({where}); baseline {base}, same run",
    )
    return [save(time_fig, out / "layers.svg"), save(memory_fig, out / "layers-memory.svg")]


def plot_kernels(payload: Record, out: Path) -> list[Path]:
    """``kernels.svg``: time and peak memory of the kernels, each with its ratio to SDPA."""
    labels = payload["settings"]["kernels"]
    base = labels[payload["settings"]["baseline"]]
    groups = [g for g in payload["groups"] if g["group"] == "sweep"]
    plan = payload["settings"]["plan"]
    with plt.rc_context(_RC):
        fig, axes = plt.subplots(2, 2, figsize=(9.2, 6.4))
        panels = [
            (axes[0][0], "seconds (min of repeats)", _seconds, False),
            (axes[1][0], "time / baseline (dashed)", lambda r: r.get("time_ratio"), True),
            (axes[0][1], "peak MiB allocated", _mib, False),
            (axes[1][1], "peak memory / baseline", lambda r: r.get("memory_ratio"), True),
        ]
        for ax, ylabel, value, is_ratio in panels:
            _curves(
                ax,
                groups,
                labels,
                value,
                baseline=payload["settings"]["baseline"],
                log_y=True,
                ratio=is_ratio,
            )
            ax.set(ylabel=ylabel)
        axes[0][0].legend()
        fig.suptitle(
            f"Causal attention kernels, forward, (B, H, D) = "
            f"({plan['batch']}, {plan['heads']}, {plan['head_dim']}); baseline {base}, same run"
        )
        fig.tight_layout()
    return [save(fig, out / "kernels.svg")]


def plot_generation(payload: Record, out: Path) -> list[Path]:
    """``generation.svg``: seconds for the whole generation, with and without the cache."""
    group = payload["groups"][0]
    records = group["records"]
    with plt.rc_context(_RC):
        fig, ax = plt.subplots(figsize=(5.5, 2.4))
        ax.barh([r["label"] for r in records], [r["min_s"] for r in records], color=["C3", "C2"])
        ax.set_xlabel("seconds (min of repeats)")
        ax.set_title(
            f"{group['shape']['new_tokens']} new tokens, {group['model']}:\n"
            f"the cache is {group['speedup']:.1f}x as fast"
        )
        fig.tight_layout()
    return [save(fig, out / "generation.svg")]


def plot_imports(payload: Record, out: Path) -> list[Path]:
    """``imports.svg``: import times of the two programs."""
    records = payload["groups"][0]["records"]
    with plt.rc_context(_RC):
        fig, ax = plt.subplots(figsize=(5.5, 2.0))
        ax.barh([r["label"] for r in records], [r["min_s"] * 1e3 for r in records])
        ax.set_xlabel("milliseconds in the imports (min of runs)")
        ax.set_title(f"import attention adds {payload['groups'][0]['cost_s'] * 1e3:.0f} ms")
        fig.tight_layout()
    return [save(fig, out / "imports.svg")]


PLOTTERS = {
    "layers": plot_layers,
    "kernels": plot_kernels,
    "generation": plot_generation,
    "imports": plot_imports,
}
