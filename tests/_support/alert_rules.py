"""The alert rules file and its groups, as promtool and Prometheus load them."""

from __future__ import annotations

from typing import Any

import yaml

from tests._support.kafka_helpers import REPO

RULES = REPO / "deploy" / "prometheus" / "recording-consumer.rules.yml"


def alert_rules() -> dict[str, dict[str, Any]]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return {rule["alert"]: rule for group in groups for rule in group["rules"] if "alert" in rule}
