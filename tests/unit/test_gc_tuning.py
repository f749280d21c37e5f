"""The collector tuning the worker and the ingress apply once start-up is done."""

from __future__ import annotations

import subprocess
import sys

from tests._support.kafka_helpers import REPO


def test_start_up_objects_are_frozen_and_young_collections_are_rarer() -> None:
    """Run in a process of its own (a freeze cannot be undone): afterwards the objects that
    existed are out of the collector's scans and the young generation waits for 10,000."""
    script = (
        "import gc\n"
        "from consumer.gc_tuning import freeze_start_up_objects\n"
        "before = gc.get_freeze_count()\n"
        "freeze_start_up_objects()\n"
        "print(before, gc.get_freeze_count(), *gc.get_threshold())\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, check=True
    )
    before, frozen, young, middle, old = map(int, result.stdout.split())
    assert before == 0
    assert frozen > 1000  # the interpreter's and the package's own objects at least
    assert (young, middle, old) == (10_000, 10, 10)
