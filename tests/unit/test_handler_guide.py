"""The handler guide lists every field of every public Struct, so it cannot drift from the code."""

from __future__ import annotations

import dataclasses
import inspect
import re

import msgspec

import consumer
from consumer import RetryPolicy
from tests._support.kafka_helpers import REPO

GUIDE = (REPO / "docs" / "writing-a-handler.md").read_text()
EVENTS = ("RecordingAvailable", "ConferenceRecordingAvailable")
"""Documented together in the guide's event table, one column each."""


def public_records() -> dict[str, type]:
    """Every class `consumer` exports that is a msgspec Struct or a dataclass."""
    return {
        name: obj
        for name in consumer.__all__
        if inspect.isclass(obj := getattr(consumer, name))
        and (issubclass(obj, msgspec.Struct) or dataclasses.is_dataclass(obj))
    }


def field_names(cls: type) -> set[str]:
    if issubclass(cls, msgspec.Struct):
        return set(cls.__struct_fields__)
    assert dataclasses.is_dataclass(cls)
    return {f.name for f in dataclasses.fields(cls)}


def rows(table: str) -> list[list[str]]:
    """The cells of each body row of the Markdown tables in `table`."""
    return [
        [cell.strip() for cell in line.strip().strip("|").split("|")]
        for line in table.splitlines()
        if line.startswith("| `")
    ]


def names(cell: str) -> set[str]:
    return set(re.findall(r"`(\w+)`", cell))


def listed(name: str) -> set[str]:
    """The fields the guide lists for `name`: its table under "Reference: public types", or
    its column of the event table."""
    if name in EVENTS:
        column = 3 + EVENTS.index(name)
        table = GUIDE.split("## The interface", 1)[1].split("\n## ", 1)[0]
        return {n for row in rows(table) if row[column].startswith("yes") for n in names(row[0])}
    reference = GUIDE.split("## Reference: public types", 1)[1]
    heading = f"\n### `{name}`\n"
    if heading not in reference:
        return set()
    section = reference.split(heading, 1)[1].split("\n### ", 1)[0]
    return {n for row in rows(section) for n in names(row[0])}


def undocumented(cls: type, name: str) -> list[str]:
    return sorted(field_names(cls) - listed(name))


def test_every_public_struct_field_is_in_the_guide() -> None:
    """Each field of each exported Struct or dataclass has a row in the guide."""
    records = public_records()
    assert {"DeadLetter", "RetryPolicy", "Record", "KafkaSettings", *EVENTS} <= set(records)
    assert {name: undocumented(cls, name) for name, cls in records.items()} == {
        name: [] for name in records
    }


def test_the_guide_lists_no_field_that_is_gone() -> None:
    """A reference table names only fields the type has (event rows: attributes it has)."""
    for name, cls in public_records().items():
        extra = {n for n in listed(name) if not hasattr(cls, n) and n not in field_names(cls)}
        assert not extra, f"{name}: {sorted(extra)}"


def test_a_new_field_would_be_reported() -> None:
    """The check is not vacuous: a field the guide does not list is named."""

    class Grown(RetryPolicy, frozen=True, kw_only=True):
        jitter: float = 1.0

    assert undocumented(Grown, "RetryPolicy") == ["jitter"]
    assert undocumented(RetryPolicy, "NoSuchType") == sorted(field_names(RetryPolicy))
