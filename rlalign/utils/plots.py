"""Line and bar plots for reports (`rlalign probe`, `rlalign sweep`): matplotlib without a display, PNG out."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path


def _axes():
    import matplotlib

    matplotlib.use("Agg")  # no display on CI machines or in Ray workers
    import matplotlib.pyplot as plt

    return plt, *plt.subplots(figsize=(6.0, 3.8), dpi=110)


def _finish(plt, figure, axes, path: str | Path, *, title: str, ylabel: str, legend: bool) -> Path:
    axes.set_title(title)
    axes.set_ylabel(ylabel)
    if legend:
        axes.legend(fontsize=8)
    return _save(plt, figure, path)


def _save(plt, figure, path: str | Path) -> Path:
    figure.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    plt.close(figure)
    return path


def line_plot(series: dict[str, tuple[Sequence[float], Sequence[float]]], path: str | Path, *, title: str,
              xlabel: str, ylabel: str, hline: float | None = None) -> Path:
    """One line per `series` entry (label -> (x, y)) and a dashed horizontal line at `hline`."""
    plt, figure, axes = _axes()
    for label, (x, y) in series.items():
        axes.plot(list(x), list(y), marker="o", markersize=3, label=label)
    if hline is not None:
        axes.axhline(hline, linestyle="--", color="grey", linewidth=1)
    axes.set_xlabel(xlabel)
    axes.grid(alpha=0.3)
    return _finish(plt, figure, axes, path, title=title, ylabel=ylabel, legend=len(series) > 1)


def stacked_bars(categories: Sequence[str], parts: dict[str, Sequence[float]], path: str | Path, *, title: str,
                 ylabel: str) -> Path:
    """One bar per category, stacked from `parts` (label -> one value per category)."""
    plt, figure, axes = _axes()
    bottom = [0.0] * len(categories)
    for label, values in parts.items():
        axes.bar(list(categories), list(values), bottom=bottom, label=label)
        bottom = [b + v for b, v in zip(bottom, values)]
    axes.grid(alpha=0.3, axis="y")
    return _finish(plt, figure, axes, path, title=title, ylabel=ylabel, legend=len(parts) > 1)


def interval_panels(panels: dict[str, dict], path: str | Path, *, title: str, ylabel: str, columns: int = 4) -> Path:
    """Small multiples: one panel per entry (label -> {"x": names, "y": values, "low": ..., "high": ...,
    "base": value or None}), each value with its interval as an error bar and the base as a dashed line,
    so overlapping intervals (no measurable difference) are visible at a glance."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = -(-len(panels) // columns)
    figure, grid = plt.subplots(rows, columns, figsize=(3.0 * columns, 2.6 * rows), dpi=110, squeeze=False,
                                sharey=True)
    for axes, (label, panel) in zip(grid.flat, panels.items()):
        positions = list(range(len(panel["x"])))
        errors = [[y - lo for y, lo in zip(panel["y"], panel["low"])], [hi - y for y, hi in zip(panel["y"], panel["high"])]]
        axes.errorbar(positions, panel["y"], yerr=errors, fmt="o", capsize=3, markersize=4)
        if panel.get("base") is not None:
            axes.axhline(panel["base"], linestyle="--", color="grey", linewidth=1)
        axes.set_xticks(positions, [str(x) for x in panel["x"]])
        axes.set_title(label, fontsize=9)
        axes.grid(alpha=0.3)
    for axes in list(grid.flat)[len(panels):]:
        axes.axis("off")
    grid[0][0].set_ylabel(ylabel)
    figure.suptitle(title, fontsize=10)
    return _save(plt, figure, path)
