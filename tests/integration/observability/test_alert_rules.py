"""deploy/prometheus's alert rules under Prometheus' own `promtool`: they load, and each alert
fires on series that should page and stays quiet on series that should not.

promtool compares annotations exactly: each case states the rendered summary, the runbook is
taken from the rules file (it has no template). `.ci/run` installs promtool (Debian's
`prometheus`), so a missing promtool fails here rather than skipping.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from tests._support.alert_rules import RULES, alert_rules

W = 'job="worker",instance="w1:9464"'
"""The labels of a scraped worker."""
I = 'job="ingress",instance="i1:8080"'  # noqa: E741 - reads like W
WORKER = {"job": "worker", "instance": "w1:9464"}
INGRESS = {"job": "ingress", "instance": "i1:8080"}


@dataclass(frozen=True)
class Case:
    """Input series (one minute apart) and the alerts expected at `at`."""

    alert: str
    claim: str
    series: dict[str, str]
    at: str
    fires: list[tuple[dict[str, str], str]] = field(default_factory=list)
    """Per firing alert: its labels (without alertname and severity) and its summary."""


CASES = [
    Case(
        "RecordingConsumerLagGrowing",
        "a backlog growing for 25 minutes",
        {f'recording_consumer_lag_messages{{{W},topic="rec",partition="0"}}': "0+10x30"},
        "25m",
        [({"job": "worker", "topic": "rec"}, "rec: the backlog has grown for 15 minutes")],
    ),
    Case(
        "RecordingConsumerLagGrowing",
        "a large but steady backlog",
        {f'recording_consumer_lag_messages{{{W},topic="rec",partition="0"}}': "500x30"},
        "25m",
    ),
    Case(
        "RecordingConsumerLagGrowing",
        "a backlog growing for only 10 minutes",
        {f'recording_consumer_lag_messages{{{W},topic="rec",partition="0"}}': "0x10 0+10x10"},
        "20m",
    ),
    Case(
        "RecordingConsumerPartitionNotCommitting",
        "lag, and the last commit 16 minutes ago",
        {
            f'recording_consumer_lag_messages{{{W},topic="rec",partition="0"}}': "5x20",
            f'recording_consumer_last_commit_timestamp_seconds{{{W},partition="0"}}': "0x20",
        },
        "16m",
        [
            (
                WORKER | {"topic": "rec", "partition": "0"},
                "rec/0 on w1:9464: 5 behind, no commit for 10 minutes",
            )
        ],
    ),
    Case(
        "RecordingConsumerPartitionNotCommitting",
        "lag, and no commit at all since the assignment",
        {f'recording_consumer_lag_messages{{{W},topic="rec",partition="1"}}': "7x10"},
        "6m",
        [
            (
                WORKER | {"topic": "rec", "partition": "1"},
                "rec/1 on w1:9464: 7 behind, no commit for 10 minutes",
            )
        ],
    ),
    Case(
        "RecordingConsumerPartitionNotCommitting",
        "lag while committing every minute, and an old commit without lag",
        {
            f'recording_consumer_lag_messages{{{W},topic="rec",partition="0"}}': "5x20",
            f'recording_consumer_last_commit_timestamp_seconds{{{W},partition="0"}}': "0+60x20",
            f'recording_consumer_lag_messages{{{W},topic="rec",partition="1"}}': "0x20",
            f'recording_consumer_last_commit_timestamp_seconds{{{W},partition="1"}}': "0x20",
        },
        "20m",
    ),
    Case(
        "RecordingConsumerDeadLetters",
        "a dead letter counted on a series that existed",
        {f'recording_consumer_dead_letters_total{{{W},reason="handler_failed"}}': "0x5 1x10"},
        "8m",
        [
            (
                WORKER | {"reason": "handler_failed"},
                "w1:9464: messages dead-lettered in the last 10 minutes (handler_failed)",
            )
        ],
    ),
    Case(
        "RecordingConsumerDeadLetters",
        "the first dead letter after a start: a new series",
        {f'recording_consumer_dead_letters_total{{{W},reason="undecodable"}}': "_x5 1x10"},
        "8m",
        [
            (
                WORKER | {"reason": "undecodable"},
                "w1:9464: messages dead-lettered in the last 10 minutes (undecodable)",
            )
        ],
    ),
    Case(
        "RecordingConsumerDeadLetters",
        "dead letters older than 10 minutes, none since",
        {f'recording_consumer_dead_letters_total{{{W},reason="undecodable"}}': "_x3 3x30"},
        "25m",
    ),
    Case(
        "RecordingConsumerRetriesRising",
        "one attempt in six ends in a retry, for 20 minutes",
        {
            f'recording_consumer_retries_total{{{W},handler="download"}}': "0+6x30",
            f'recording_consumer_handler_duration_seconds_count{{{W},handler="download",result="ok"}}': "0+30x30",  # noqa: E501
            f'recording_consumer_handler_duration_seconds_count{{{W},handler="download",result="retry"}}': "0+6x30",  # noqa: E501
        },
        "20m",
        [({"job": "worker", "handler": "download"}, "download: 16.67% of attempts end in a retry")],
    ),
    Case(
        "RecordingConsumerRetriesRising",
        "one attempt in sixty-one ends in a retry",
        {
            f'recording_consumer_retries_total{{{W},handler="download"}}': "0+1x30",
            f'recording_consumer_handler_duration_seconds_count{{{W},handler="download",result="ok"}}': "0+60x30",  # noqa: E501
            f'recording_consumer_handler_duration_seconds_count{{{W},handler="download",result="retry"}}': "0+1x30",  # noqa: E501
        },
        "20m",
    ),
    Case(
        "RecordingConsumerNotReady",
        "unready for 6 minutes",
        {f"recording_consumer_ready{{{W}}}": "0x10"},
        "6m",
        [(WORKER, "w1:9464 has not been ready for 5 minutes")],
    ),
    Case(
        "RecordingConsumerNotReady",
        "unready for 3 minutes (a rebalance), ready again",
        {f"recording_consumer_ready{{{W}}}": "1x4 0x3 1x5"},
        "9m",
    ),
    Case(
        "RecordingConsumerBrokerUnreachable",
        "the broker unreachable for 3 minutes",
        {f"recording_consumer_broker_reachable{{{W}}}": "0x5"},
        "3m",
        [(WORKER, "w1:9464 cannot reach Kafka")],
    ),
    Case(
        "RecordingConsumerBrokerUnreachable",
        "one failed probe",
        {f"recording_consumer_broker_reachable{{{W}}}": "1 1 0 1 1"},
        "4m",
    ),
    Case(
        "RecordingConsumerIngressKafkaDown",
        "the ingress without Kafka for 3 minutes",
        {f"recording_consumer_ingress_kafka_up{{{I}}}": "0x5"},
        "3m",
        [(INGRESS, "ingress i1:8080 cannot reach Kafka")],
    ),
    Case(
        "RecordingConsumerIngressKafkaDown",
        "the ingress without Kafka for one minute",
        {f"recording_consumer_ingress_kafka_up{{{I}}}": "1 0 1 1 1"},
        "4m",
    ),
    Case(
        "RecordingConsumerIngressSpooling",
        "events in the spool for 13 minutes",
        {f"recording_consumer_ingress_spool_messages{{{I}}}": "0 5 10 20x15"},
        "14m",
        [(INGRESS, "ingress i1:8080: 20 events waiting in the spool for 10 minutes")],
    ),
    Case(
        "RecordingConsumerIngressSpooling",
        "a spool drained within two minutes",
        {f"recording_consumer_ingress_spool_messages{{{I}}}": "0 5 0x15"},
        "14m",
    ),
    Case(
        "RecordingConsumerIngressRefusing",
        "refusals counted on a series that existed",
        {f'recording_consumer_ingress_refusals_total{{{I},reason="spool_full"}}': "0x5 2x10"},
        "8m",
        [(INGRESS | {"reason": "spool_full"}, "ingress i1:8080 refused events (spool_full)")],
    ),
    Case(
        "RecordingConsumerIngressRefusing",
        "the first refusal after a start: a new series",
        {f'recording_consumer_ingress_refusals_total{{{I},reason="spool_full"}}': "_x3 1x5"},
        "5m",
        [(INGRESS | {"reason": "spool_full"}, "ingress i1:8080 refused events (spool_full)")],
    ),
    Case(
        "RecordingConsumerIngressRefusing",
        "refusals older than 10 minutes, none since",
        {f'recording_consumer_ingress_refusals_total{{{I},reason="spool_full"}}': "4x30"},
        "25m",
    ),
]


def promtool() -> str:
    found = shutil.which("promtool")
    assert found, "promtool not found: install Debian's `prometheus` package (.ci/run does)"
    return found


def test_rules_pass_promtool_check() -> None:
    """`promtool check rules` accepts the rules file: valid PromQL, templates and durations."""
    done = subprocess.run(
        [promtool(), "check", "rules", str(RULES)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_every_rule_has_a_runbook_and_every_alert_both_kinds_of_case() -> None:
    """Each alert has a summary, a runbook and a severity, and CASES make it fire at least once
    and stay quiet at least once."""
    rules = alert_rules()
    for name, rule in rules.items():
        assert {"summary", "runbook"} <= rule["annotations"].keys(), name
        assert rule["labels"]["severity"] in ("warning", "critical"), name
    firing = {case.alert for case in CASES if case.fires}
    quiet = {case.alert for case in CASES if not case.fires}
    assert firing == quiet == rules.keys()


def test_promtool_unit_tests_of_every_alert(tmp_path: Path) -> None:
    """`promtool test rules` passes every case: each alert fires, with its labels and rendered
    summary, exactly on the series meant to page, and on no other."""
    rules = alert_rules()
    tests = []
    for case in CASES:
        rule = rules[case.alert]
        expected = [
            {
                "exp_labels": labels | {"severity": rule["labels"]["severity"]},
                "exp_annotations": {
                    "summary": summary,
                    "runbook": rule["annotations"]["runbook"],
                },
            }
            for labels, summary in case.fires
        ]
        tests.append(
            {
                "name": f"{case.alert}: {case.claim}",
                "interval": "1m",
                "input_series": [{"series": s, "values": v} for s, v in case.series.items()],
                "alert_rule_test": [
                    {"eval_time": case.at, "alertname": case.alert, "exp_alerts": expected}
                ],
            }
        )
    unit = tmp_path / "rules.test.yml"
    unit.write_text(
        yaml.safe_dump({"rule_files": [str(RULES)], "evaluation_interval": "1m", "tests": tests})
    )
    done = subprocess.run(
        [promtool(), "test", "rules", str(unit)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
