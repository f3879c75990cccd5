"""The Grafana dashboard's queries, and the same queries with Grafana's variables filled in as a
Grafana would for "All accounts" (what tests/monitoring/test_prometheus.py sends to Prometheus)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from tests.monitoring.rules import DASHBOARD

#: Grafana's values for the variables the queries use: every account, a short window (the
#: test's Prometheus scrapes every second).
VARIABLES = {"$__rate_interval": "30s", "$account": ".*"}
_VARIABLE = re.compile(r"\$\{?\w+\}?")


@dataclass(frozen=True)
class Query:
    """One target of one panel."""

    panel: str
    ref_id: str
    expr: str

    def concrete(self) -> str:
        """The expression with the dashboard's variables filled in."""
        expr = self.expr
        for name, value in VARIABLES.items():
            expr = expr.replace(name, value)
        return expr

    def __str__(self) -> str:
        return f"{self.panel} [{self.ref_id}]: {self.expr}"


def dashboard() -> dict[str, Any]:
    """The dashboard JSON."""
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return loaded


def panels() -> list[dict[str, Any]]:
    """Every panel that shows data (rows left out)."""
    return [panel for panel in dashboard()["panels"] if panel["type"] != "row"]


def queries() -> list[Query]:
    """Every query of every panel."""
    return [
        Query(panel["title"], target["refId"], target["expr"])
        for panel in panels()
        for target in panel["targets"]
    ]


def variables_in(expr: str) -> set[str]:
    """The `$variables` an expression uses."""
    return set(_VARIABLE.findall(expr))
