"""Prometheus metrics (prometheus-client). Defined once here; the worker exposes them (#5)."""

from __future__ import annotations

from prometheus_client import Counter

TOKEN_REFRESHES = Counter(
    "zns_token_refreshes_total",
    "OA access-token refresh attempts, by account and outcome (ok, unknown, error type).",
    ["account", "outcome"],
)
