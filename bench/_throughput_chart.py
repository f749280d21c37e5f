"""bench/throughput.py's table as a PNG bar chart (matplotlib, no display needed)."""

from __future__ import annotations

import textwrap
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # before pyplot: files only, never a window

import matplotlib.pyplot as plt

COLOURS = {"bare": "#9e9e9e", "worker": "#1f77b4", "FastStream": "#ff7f0e"}


@dataclass(frozen=True)
class Row:
    """One loop of the table: its name, median events/s, and its ratio as text."""

    loop: str
    rate: float
    ratio: str


def draw(rows: list[Row], path: Path, title: str, machine: str) -> None:
    """Horizontal bars, first row on top, each labelled with its rate and ratio."""
    figure, axes = plt.subplots(figsize=(11, 0.6 * len(rows) + 1.8), layout="constrained")
    names = [row.loop for row in rows][::-1]
    rates = [row.rate for row in rows][::-1]
    colours = [
        next((c for key, c in COLOURS.items() if row.loop.startswith(key)), COLOURS["bare"])
        for row in rows
    ][::-1]
    bars = axes.barh(names, rates, color=colours)
    for bar, row in zip(bars, rows[::-1], strict=True):
        axes.text(
            bar.get_width(),
            bar.get_y() + bar.get_height() / 2,
            f"  {row.rate:,.0f}/s   {row.ratio}",
            va="center",
            fontsize=8,
        )
    axes.set_xlim(0, max(rates) * 1.6)  # room for the labels right of the longest bar
    axes.xaxis.set_major_formatter(lambda value, _: f"{value / 1000:g}k")
    axes.set_xlabel("events per second (higher is better)")
    axes.tick_params(axis="y", labelsize=8)
    subtitle = textwrap.fill(machine, 110)
    figure.suptitle(f"recording-consumer throughput, {title}\n{subtitle}", fontsize=9)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
