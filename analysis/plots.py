"""The report's plots (matplotlib, headless): each ``plot_*`` turns one report section into a figure;
``save_figure`` writes it as a PNG."""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from analysis.fmt import GIB, fmt_hours, gpus_label
from analysis.output import atomic_write


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _colours(names: Sequence[str]) -> dict[str, object]:
    cmap = _pyplot().get_cmap("tab10")
    return {name: cmap(i % 10) for i, name in enumerate(names)}


def plot_projection(projection: Mapping):
    rows = projection["rows"]
    if not rows:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    labels = [gpus_label(r["gpus"]) + (" *" if r["extrapolated"] else "") for r in rows]
    names = list(rows[0]["stages"])
    colours = _colours(names)
    bottom = np.zeros(len(rows))
    for name in names:
        heights = np.array([r["stages"][name]["hours"] for r in rows])
        ax.bar(labels, heights, bottom=bottom, label=name, color=colours[name])
        bottom += heights
    totals = np.array([r["total_hours"] for r in rows])
    errors = np.maximum(0, [totals - [r["low_hours"] for r in rows], [r["high_hours"] for r in rows] - totals])
    ax.errorbar(labels, totals, yerr=errors, fmt="none", ecolor="black", capsize=4)
    ax.axhline(
        projection["target_hours"],
        color="red",
        linestyle="--",
        label=f"target {fmt_hours(projection['target_hours'])} h",
    )
    ax.set_ylabel("projected hours")
    ax.set_title("Full sample, projected (* extrapolated)")
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    return fig


def plot_stage_breakdown(breakdown: Mapping):
    rows = breakdown["rows"]
    if not rows:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 0.6 * len(rows) + 1.5))
    labels = [f"{r['dataset']} / {gpus_label(r['gpus'])}" for r in rows]
    names = list(dict.fromkeys(s["stage"] for r in rows for s in r["stages"]))
    colours = _colours(names)
    left = np.zeros(len(rows))
    for name in names:
        widths = np.array([next((s["seconds"] for s in r["stages"] if s["stage"] == name), 0.0) for r in rows])
        ax.barh(labels, widths, left=left, label=name, color=colours[name])
        left += widths
    ax.set_xlabel("seconds")
    ax.set_title("Time per stage (mean over repeats)")
    ax.legend(fontsize=7, ncol=3)
    fig.tight_layout()
    return fig


def plot_memory_timeline(timeline: Mapping):
    if not timeline.get("available"):
        return None
    plt = _pyplot()
    gpus = timeline["gpus"]
    fig, axes = plt.subplots(len(gpus), 1, figsize=(8, 2.0 * len(gpus) + 1.2), sharex=True, squeeze=False)
    colours = _colours(list(dict.fromkeys(span["stage"] for gpu in gpus for span in gpu["spans"])))
    for ax, gpu in zip(axes[:, 0], gpus, strict=True):
        for span in gpu["spans"]:
            ax.axvspan(span["start"], span["end"], color=colours[span["stage"]], alpha=0.25, linewidth=0)
        ax.plot(gpu["t"], np.array(gpu["mem_used_bytes"]) / GIB, color="black", linewidth=1)
        if gpu.get("total_bytes"):
            ax.axhline(gpu["total_bytes"] / GIB, color="red", linestyle="--", linewidth=0.8)
        ax.set_ylim(0, 1.08 * max(gpu.get("total_bytes") or 0, gpu["peak_bytes"]) / GIB)
        ax.set_ylabel(f"GPU {gpu['gpu']} GiB")
    handles = [plt.Rectangle((0, 0), 1, 1, color=colour, alpha=0.25) for colour in colours.values()]
    fig.legend(handles, list(colours), loc="lower center", ncol=min(7, len(colours)), fontsize=7)
    axes[-1, 0].set_xlabel("seconds since the first sample")
    fig.suptitle("GPU memory used (NVML; dashed: the card's total), shaded by the stage each GPU was in")
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    return fig


def plot_scaling(scaling: Mapping):
    rows = scaling["rows"]
    if not rows:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5, 4))
    gpus = [r["gpus"] for r in rows]
    ax.plot(gpus, [r["ideal_speedup"] for r in rows], "k--", label="ideal")
    ax.plot(gpus, [r["speedup"] for r in rows], "o-", label="wall")
    ax.plot(gpus, [r["gpu_stage_speedup"] for r in rows], "s-", label="GPU stages")
    ax.set_xlabel("GPUs")
    ax.set_ylabel(f"speed-up vs {gpus_label(scaling['relative_to_gpus'])}")
    ax.set_xticks(gpus)
    ax.set_title(f"Scaling on {scaling['dataset']}")
    ax.legend()
    fig.tight_layout()
    return fig


def plot_variants(variants: Mapping):
    rows = [r for r in variants["rows"] if r["speedup"] is not None]
    if not rows:
        return None
    plt = _pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.5))
    names = [r["variant"] for r in rows]
    left.bar(names, [r["speedup"] for r in rows])
    left.axhline(1.0, color="black", linewidth=0.8)
    left.set_ylabel("speed-up vs baseline")
    memory = [r["peak_gpu_bytes"] for r in rows]
    if any(m for m in memory):
        right.bar(names, [(m or 0) / GIB for m in memory])
        right.set_ylabel("peak GPU memory (GiB)")
    else:
        right.text(0.5, 0.5, "no GPU memory measured", ha="center", va="center", transform=right.transAxes)
        right.set_axis_off()
    for ax in (left, right):
        ax.tick_params(axis="x", labelrotation=30)
    fig.suptitle(f"Variants on {variants['dataset']}, {gpus_label(variants['gpus'])}")
    fig.tight_layout()
    return fig


def plot_history(history: Mapping, target_hours: float):
    rows = [r for r in history["rows"] if r["hours"].get(str(history["gpus"])) is not None]
    if not rows:
        return None
    plt = _pyplot()
    key = str(history["gpus"])
    fig, ax = plt.subplots(figsize=(max(5, 0.6 * len(rows) + 2), 3.5))
    x = np.arange(len(rows))
    hours = np.array([r["hours"][key] for r in rows])
    low = np.array([r["low_hours"][key] for r in rows])
    high = np.array([r["high_hours"][key] for r in rows])
    ax.errorbar(x, hours, yerr=np.maximum(0, [hours - low, high - hours]), fmt="o-", capsize=3)
    ax.axhline(target_hours, color="red", linestyle="--", label="target")
    ax.set_ylim(bottom=0)
    ax.set_xticks(x, [r["commit"] for r in rows], rotation=45, fontsize=7)
    ax.set_ylabel(f"projected hours, {gpus_label(history['gpus'])}")
    ax.set_title(f"Projection per commit on {history['machine']}")
    ax.legend()
    fig.tight_layout()
    return fig


def save_figure(fig, path: str | Path) -> None:
    """Write ``fig`` as a PNG atomically (a reader never sees half an image), then free it."""
    try:
        with atomic_write(path, "wb") as handle:
            fig.savefig(handle, format="png", dpi=110)
    finally:
        _pyplot().close(fig)
