"""The Grafana dashboard is importable and shows only metrics the worker exports, with the
panels operators asked for (#19). That every query returns data: test_prometheus.py."""

from __future__ import annotations

from tests.monitoring.dashboard import VARIABLES, dashboard, panels, queries, variables_in
from tests.monitoring.exported import exported_names, used_names

#: What the issue asks the dashboard to show, and a metric each must read.
ASKED = {
    "sends/s per account": "zns_messages_sent_total",
    "quota left vs daily": "zns_daily_quota",
    "journey tokens bought": "zns_journey_tokens_created_total",
    "latency enqueue → sent per lane": "zns_enqueue_to_sent_seconds",
    "retries by class": "zns_retries_total",
    "failures by class": "zns_send_failures_total",
    "parked": "zns_parked_jobs",
    "dead letters": "zns_dead_letters_stored",
    "token state": "zns_token_state",
}


def test_the_dashboard_is_an_importable_grafana_dashboard() -> None:
    board = dashboard()
    assert board["uid"] and board["title"] and board["schemaVersion"] >= 36
    assert "id" not in board  # an id would overwrite another dashboard on import
    ids = [panel["id"] for panel in board["panels"]]
    assert len(ids) == len(set(ids)), "two panels share an id"
    names = {variable["name"] for variable in board["templating"]["list"]}
    assert names == {"datasource", "account"}
    for panel in panels():
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        assert panel["targets"], f"{panel['title']}: no query"
        assert {"h", "w", "x", "y"} <= set(panel["gridPos"])
        refs = [target["refId"] for target in panel["targets"]]
        assert len(refs) == len(set(refs)), f"{panel['title']}: two targets share a refId"


def test_every_query_uses_exported_metrics_and_known_variables() -> None:
    for query in queries():
        used = used_names(query.expr)
        assert used, f"{query}: no zns_ metric"
        assert used <= exported_names(), f"{query}: not exported: {used - exported_names()}"
        assert variables_in(query.expr) <= set(VARIABLES), f"{query}: unknown variable"


def test_the_panels_the_issue_asks_for_are_there() -> None:
    shown = set().union(*(used_names(query.expr) for query in queries()))
    missing = {what: metric for what, metric in ASKED.items() if metric not in shown}
    assert not missing
