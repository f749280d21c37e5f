"""Two servers measured at once on one CPU: ``bench/ingress.py --paired``.

Run one after the other, the ingress and its floor each saturate a core, and their ratio swings
by a fifth between rounds on a shared VM: the broker, wrk and the host's other tenants take a
different share each time. Run together, both pinned to the same CPU, each with its own wrk
(pinned to the other CPUs), the two get equal time from the scheduler: requests/s then compare
their CPU cost per request under the same disturbances, and the ratio holds within a few
hundredths from round to round (and means the same on a faster machine: both are bound by the
same core).
"""

from __future__ import annotations

import os
import statistics
from pathlib import Path

from _wrk import Command, measure

Round = dict[str, dict[str, float]]


def measure_paired(
    names: tuple[str, str], rounds: int, seconds: float, command: Command, script: Path
) -> list[Round]:
    """Per round, each server's wrk figures plus ``server_cpu`` (CPU seconds per second)."""
    available = sorted(os.sched_getaffinity(0))
    if len(available) < 2:
        raise SystemExit("--paired needs two CPUs: one for both servers, the rest for wrk")
    shared, others = {available[-1]}, set(available[:-1])
    return [
        measure(names, seconds, script, command, servers_on=shared, wrk_on=others)
        for _ in range(rounds)
    ]


def paired_table(names: tuple[str, str], results: list[Round]) -> str:
    first, second = names
    lines = [
        f"| round | {first} req/s | {second} req/s | {first} / {second} | p99 ms {first} "
        f"| p99 ms {second} | CPU µs/req {first} | CPU µs/req {second} |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    ratios = []
    for number, measured in enumerate(results, 1):
        a, b = measured[first], measured[second]
        ratios.append(a["rate"] / b["rate"])
        lines.append(
            f"| {number} | {a['rate']:,.0f} | {b['rate']:,.0f} | {ratios[-1]:.3f} "
            f"| {a['p99'] * 1000:.1f} | {b['p99'] * 1000:.1f} "
            f"| {a['server_cpu'] / a['rate'] * 1e6:.0f} | {b['server_cpu'] / b['rate'] * 1e6:.0f} |"
        )
    lines.append(
        f"\n{first} / {second} in requests/s, both at once on one CPU: median "
        f"{statistics.median(ratios):.3f} (goal >= 0.8), {min(ratios):.3f} to {max(ratios):.3f} "
        f"over {len(ratios)} rounds"
    )
    return "\n".join(lines)
