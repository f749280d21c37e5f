"""Peak memory of a worker process started against a large backlog.

Run from the repository root:  .venv/bin/python bench/memory.py [count]
(default 1,000,000 events of ~1 KB on 6 partitions; producing them takes a minute or so). Uses
``$KAFKA_BOOTSTRAP_SERVERS`` or starts the local broker.

The worker is the real command, ``recording-consumer run --until-idle 2``, with the shipped
config (every status to the ``log`` handler) at level warning, so the figure includes fetch
buffers, jobs in flight and the interpreter. Goal: peak RSS under 200 MB.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import bootstrap, connect, fresh, messages, publish_backlog, verdict
from aiokafka import AIOKafkaConsumer, TopicPartition

PARTITIONS = 6
GOAL_MB = 200
REPO = Path(__file__).resolve().parent.parent


async def lag(server: str, topic: str, group: str) -> int:
    """Messages not yet committed by `group`, summed over the topic's partitions."""
    consumer = AIOKafkaConsumer(**connect(server), group_id=group)
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        end = await consumer.end_offsets(partitions)
        committed = [await consumer.committed(tp) or 0 for tp in partitions]
        total: int = sum(end.values()) - sum(committed)
        return total
    finally:
        await consumer.stop()


def run_worker(server: str, topic: str, group: str) -> tuple[float, int, int, str]:
    """Seconds, peak RSS in KiB, exit status and stderr of one worker process run until idle.

    The peak is the child's own VmHWM, polled: its rusage maxrss would also count this
    process's pages (the backlog it produced), which Linux carries over fork and exec.
    """
    env = os.environ | {
        "KAFKA_BOOTSTRAP_SERVERS": server,
        "RECORDING_CONSUMER__KAFKA__TOPIC": topic,
        "RECORDING_CONSUMER__KAFKA__GROUP_ID": group,
        "RECORDING_CONSUMER__LOGGING__FORMAT": "json",
        "RECORDING_CONSUMER__LOGGING__LEVEL": "warning",
    }
    command = [str(REPO / ".venv/bin/recording-consumer"), "run", "--until-idle", "2"]
    started = time.monotonic()
    peak = 0
    with tempfile.TemporaryFile() as errors:
        child = subprocess.Popen(
            command, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=errors
        )
        status = Path(f"/proc/{child.pid}/status")
        while child.poll() is None:
            with contextlib.suppress(OSError, ValueError):
                hwm = next(line for line in status.read_text().splitlines() if "VmHWM" in line)
                peak = max(peak, int(hwm.split()[1]))
            time.sleep(0.05)
        errors.seek(0)
        return time.monotonic() - started, peak, child.returncode, errors.read().decode()


def main(count: int) -> None:
    server = bootstrap()
    topic = fresh("memory")
    started = time.monotonic()
    asyncio.run(publish_backlog(server, topic, PARTITIONS, messages(count)))
    took = time.monotonic() - started
    print(f"{count:,} events on {PARTITIONS} partitions, produced in {took:.0f} s")
    group = fresh("memory-worker")
    seconds, peak_kib, status, errors = run_worker(server, topic, group)
    left = asyncio.run(lag(server, topic, group))
    peak_mb = peak_kib * 1024 / 1e6
    print(f"worker exit status {status}, {seconds:.1f} s including start-up and 2 s idle wait")
    print(f"uncommitted after the run: {left:,} (expected 0)")
    print(f"peak RSS {peak_mb:.0f} MB; goal < {GOAL_MB} MB: {verdict(peak_mb < GOAL_MB)}")
    if status != 0 or left:
        sys.exit(f"worker stderr:\n{errors[-3000:]}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000)
