"""deploy/monitoring's alert rules: promtool checks them and runs their unit tests (every alert
firing and not firing); the PrometheusRule holds the same rules; every runbook names a real `zns`
command; every expression names metrics the worker exports."""

from __future__ import annotations

import re
import shlex
import subprocess
from typing import Any

import jsonschema
import pytest
import typer
import yaml

from tests.deploy.manifests import load_docs, zns_group
from tests.monitoring.exported import exported_names, used_names
from tests.monitoring.prometheusrule_schema import PROMETHEUS_RULE as SCHEMA
from tests.monitoring.rules import (
    PROMETHEUS_RULE,
    RULES,
    UNIT_TESTS,
    prometheus_rule,
    render,
    rule_groups,
)
from tests.monitoring.tools import require_tool

SEVERITIES = {"critical", "warning", "info"}
#: Placeholders of the runbooks, for checking the commands parse.
SAMPLE = {"{{ $labels.account }}": "default", " ID": " 0123456789abcdef0123456789abcdef"}


def alerts() -> list[dict[str, Any]]:
    """Every alert rule of rules.yml."""
    return [rule for group in rule_groups() for rule in group["rules"] if "alert" in rule]


def _promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [require_tool("promtool"), *args], capture_output=True, text=True, timeout=120, check=False
    )


def test_promtool_checks_the_rules() -> None:
    result = _promtool("check", "rules", str(RULES))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(alerts())} rules found" in result.stdout


def test_promtool_unit_tests_pass() -> None:
    result = _promtool("test", "rules", str(UNIT_TESTS))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_every_alert_is_unit_tested_firing_and_not_firing() -> None:
    cases = [
        case for test in yaml.safe_load(UNIT_TESTS.read_text(encoding="utf-8"))["tests"]
        for case in test["alert_rule_test"]
    ]  # fmt: skip
    for rule in alerts():
        mine = [case for case in cases if case["alertname"] == rule["alert"]]
        assert any(case["exp_alerts"] for case in mine), f"{rule['alert']} never tested firing"
        assert any(not case["exp_alerts"] for case in mine), f"{rule['alert']} never quiet"


@pytest.mark.parametrize("rule", alerts(), ids=lambda rule: rule["alert"])
def test_every_alert_has_a_severity_a_summary_and_a_runbook(rule: dict[str, Any]) -> None:
    assert rule["labels"]["severity"] in SEVERITIES
    assert rule["annotations"]["summary"].strip()
    assert _commands(rule["annotations"]["runbook"]), "the runbook names no `zns` command"


@pytest.mark.parametrize("rule", alerts(), ids=lambda rule: rule["alert"])
def test_every_runbook_command_is_a_real_zns_command(rule: dict[str, Any]) -> None:
    for command in _commands(rule["annotations"]["runbook"]):
        _assert_parses(command, where=rule["alert"])


@pytest.mark.parametrize("rule", alerts(), ids=lambda rule: rule["alert"])
def test_every_alert_uses_exported_metrics(rule: dict[str, Any]) -> None:
    used = used_names(rule["expr"])
    assert used, "no zns_ metric in the expression"
    assert used <= exported_names(), f"not exported by the worker: {used - exported_names()}"


def test_the_prometheusrule_holds_the_rules_of_the_plain_file() -> None:
    [doc] = load_docs(PROMETHEUS_RULE)
    assert doc["spec"]["groups"] == rule_groups()
    assert doc == prometheus_rule(rule_groups())
    assert PROMETHEUS_RULE.read_text(encoding="utf-8") == render(), (
        "prometheusrule.yaml is stale: run .venv/bin/python -m tests.monitoring.rules"
    )


def test_the_prometheusrule_validates_against_the_crd_schema() -> None:
    [doc] = load_docs(PROMETHEUS_RULE)
    jsonschema.validate(doc, SCHEMA)


@pytest.mark.parametrize(
    "breakage",
    [
        lambda d: d["spec"]["groups"][0]["rules"][0].update(fro="5m"),  # a typo of `for`
        lambda d: d["spec"]["groups"][0]["rules"][0].update({"for": "five minutes"}),
        lambda d: d["spec"]["groups"][0]["rules"][0].pop("expr"),
        lambda d: d["spec"]["groups"][0].pop("name"),
        lambda d: d.update(kind="PrometheusRules"),
    ],
    ids=["unknown field", "bad duration", "no expr", "no group name", "wrong kind"],
)
def test_the_schema_refuses_broken_prometheusrules(breakage: Any) -> None:
    [doc] = load_docs(PROMETHEUS_RULE)
    breakage(doc)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(doc, SCHEMA)


def _commands(runbook: str) -> list[str]:
    """The `zns …` commands quoted in a runbook."""
    return [text for text in re.findall(r"`([^`]+)`", runbook) if text.startswith("zns ")]


def _assert_parses(command: str, *, where: str) -> None:
    """`zns a b --opt …` names a real (sub)command and its options parse; nothing is run."""
    for placeholder, value in SAMPLE.items():
        command = command.replace(placeholder, value)
    argv = shlex.split(command)[1:]
    current: Any = zns_group()
    name = "zns"
    while isinstance(getattr(current, "commands", None), dict):  # a group (typer vendors click)
        assert argv, f"{where}: `{command}` stops at a command group"
        found = current.commands.get(argv[0])
        assert found is not None, f"{where}: `{command}`: no subcommand {argv[0]!r}"
        current, name, argv = found, f"{name} {argv[0]}", argv[1:]
    try:
        current.make_context(name, list(argv))
    except typer.TyperException as exc:  # usage errors: unknown option, bad value, missing arg
        raise AssertionError(f"{where}: `{command}` does not parse: {exc}") from None
