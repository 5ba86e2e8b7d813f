"""PNG charts written by the stages (PNGs render offline, unlike `dvc plots show` HTML)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)

from minigpt.files import atomic_file  # noqa: E402


def _save(figure, path: str | Path) -> None:
    figure.tight_layout()
    with atomic_file(path, "wb") as handle:
        figure.savefig(handle, format="png", dpi=110)
    plt.close(figure)


def grouped_bars(
    path: str | Path, values: dict[str, dict[str, float]], title: str, ylabel: str, value_format: str = "%.2f"
) -> None:
    """One group of bars per outer key, one bar per inner key, each labelled with its value."""
    groups = list(values)
    series = list(dict.fromkeys(name for group in values.values() for name in group))
    width = 0.8 / max(len(series), 1)
    figure, axes = plt.subplots(figsize=(min(14, max(6, 0.9 * len(groups) * max(len(series), 1))), 4.5))
    for index, name in enumerate(series):
        positions = [group_index + (index - (len(series) - 1) / 2) * width for group_index in range(len(groups))]
        heights = [values[group].get(name, 0.0) for group in groups]
        bars = axes.bar(positions, heights, width, label=name)
        axes.bar_label(bars, fmt=value_format, fontsize=8)
    axes.set_xticks(range(len(groups)), groups)
    axes.set_ylabel(ylabel)
    axes.set_title(title)
    if len(series) > 1:
        axes.legend()
    axes.grid(axis="y", alpha=0.3)
    _save(figure, path)


def line_charts(path: str | Path, panels: dict[str, dict[str, tuple[list[float], list[float]]]], xlabel: str) -> None:
    """Side-by-side panels (title -> {series name -> (xs, ys)}), one line per series."""
    figure, axes_list = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 4), squeeze=False)
    for axes, (title, series) in zip(axes_list[0], panels.items()):
        for name, (xs, ys) in series.items():
            axes.plot(xs, ys, label=name, marker="o" if len(xs) < 30 else None, markersize=3)
        axes.set_title(title)
        axes.set_xlabel(xlabel)
        axes.grid(alpha=0.3)
        if len(series) > 1:
            axes.legend()
    _save(figure, path)


def histogram(path: str | Path, values: list[float], title: str, xlabel: str, bins: int = 10) -> None:
    figure, axes = plt.subplots(figsize=(6, 4))
    axes.hist(values, bins=bins, range=(0, 1), edgecolor="white")
    if values:
        mean = sum(values) / len(values)
        axes.axvline(mean, color="black", linestyle="--", label=f"mean {mean:.3f}")
        axes.legend()
    axes.set_title(title)
    axes.set_xlabel(xlabel)
    axes.set_ylabel("answers")
    axes.grid(axis="y", alpha=0.3)
    _save(figure, path)


def runs_and_bars(
    path: str | Path,
    curves: dict[str, list[tuple[list[float], list[float]]]],
    curve_title: str,
    xlabel: str,
    bars: dict[str, dict[str, tuple[float, float, float]]],
    baselines: dict[str, dict[str, float]] | None = None,
) -> None:
    """A panel of curves (every run, one colour per series), then one panel per bar metric
    (title -> {series -> (mean, min, max)}): bars at the mean, whiskers over the runs' range,
    optional dashed baselines."""
    colours = {name: f"C{index}" for index, name in enumerate(curves)}
    figure, axes_list = plt.subplots(1, 1 + len(bars), figsize=(5 * (1 + len(bars)), 4), squeeze=False)
    curve_axes = axes_list[0][0]
    for name, runs in curves.items():
        for index, (xs, ys) in enumerate(runs):
            curve_axes.plot(xs, ys, color=colours[name], alpha=0.8, label=name if index == 0 else None)
    curve_axes.set_title(curve_title)
    curve_axes.set_xlabel(xlabel)
    curve_axes.grid(alpha=0.3)
    curve_axes.legend()
    for axes, (title, values) in zip(axes_list[0][1:], bars.items()):
        names = list(values)
        means = [values[name][0] for name in names]
        ranges = [
            [mean - values[name][1] for name, mean in zip(names, means)],
            [values[name][2] - mean for name, mean in zip(names, means)],
        ]
        bar_set = axes.bar(names, means, yerr=ranges, capsize=6, color=[colours.get(name, "C7") for name in names])
        axes.bar_label(
            bar_set,
            fmt=lambda value: f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3f}",
            fontsize=8,
            label_type="center",
        )
        for index, (label, level) in enumerate((baselines or {}).get(title, {}).items()):
            axes.axhline(level, color="black", linestyle=["--", ":", "-."][index % 3], linewidth=1, label=label)
        if (baselines or {}).get(title):
            axes.legend(fontsize=8)
        axes.set_title(title)
        axes.grid(axis="y", alpha=0.3)
    _save(figure, path)
