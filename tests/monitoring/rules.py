"""deploy/monitoring/: the plain rules file is the source; the PrometheusRule is built from it.

`python -m tests.monitoring.rules` writes deploy/monitoring/prometheusrule.yaml again after an
edit of rules.yml (tests/monitoring/test_rules.py fails until it is).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from tests.support import REPO

MONITORING = REPO / "deploy" / "monitoring"
RULES = MONITORING / "rules.yml"
PROMETHEUS_RULE = MONITORING / "prometheusrule.yaml"
DASHBOARD = MONITORING / "grafana-dashboard.json"
UNIT_TESTS = REPO / "tests" / "monitoring" / "rules_test.yml"
HEADER = """\
# Generated from rules.yml by `.venv/bin/python -m tests.monitoring.rules`: edit rules.yml, then
# run that (tests/monitoring/test_rules.py checks that both hold the same rules).
# For the Prometheus operator: add the label your Prometheus's ruleSelector wants (often
# `release: <helm release>`) in your overlay, and the namespace.
"""


def rule_groups(path: Path = RULES) -> list[dict[str, Any]]:
    """The `groups` of a plain Prometheus rules file."""
    groups: list[dict[str, Any]] = yaml.safe_load(path.read_text(encoding="utf-8"))["groups"]
    return groups


def prometheus_rule(groups: list[dict[str, Any]]) -> dict[str, Any]:
    """The PrometheusRule (monitoring.coreos.com/v1) holding `groups`."""
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {
            "name": "zns-journey-worker",
            "labels": {
                "app.kubernetes.io/name": "zns-journey-worker",
                "app.kubernetes.io/component": "monitoring",
            },
        },
        "spec": {"groups": groups},
    }


def render() -> str:
    """The text of prometheusrule.yaml."""
    body = yaml.safe_dump(
        prometheus_rule(rule_groups()), sort_keys=False, width=100, allow_unicode=True
    )
    return HEADER + body


if __name__ == "__main__":
    PROMETHEUS_RULE.write_text(render(), encoding="utf-8")
    print(f"wrote {PROMETHEUS_RULE.relative_to(REPO)}")
