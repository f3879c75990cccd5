"""The metric names the worker and the webhook receiver export, and the names a PromQL
expression uses: every alert and dashboard query must name metrics that exist."""

from __future__ import annotations

import re

from tests.support import REPO

#: Modules that define metrics (prometheus-client objects and scrape-time gauges).
SOURCES = (REPO / "worker" / "metrics.py", REPO / "worker" / "ops" / "gauges.py")
HISTOGRAM_SUFFIXES = ("_bucket", "_count", "_sum")
_DEFINED = re.compile(r"""["'](zns_[a-z0-9_]+)["']""")
_USED = re.compile(r"\b(zns_[a-z0-9_]+)\b")


def exported_names() -> set[str]:
    """Every `zns_*` metric name defined in SOURCES."""
    names: set[str] = set()
    for path in SOURCES:
        names |= set(_DEFINED.findall(path.read_text(encoding="utf-8")))
    return names


def used_names(expr: str) -> set[str]:
    """The `zns_*` metric names in a PromQL expression, histogram suffixes removed."""
    exported = exported_names()
    return {_base(name, exported) for name in _USED.findall(expr)}


def _base(name: str, exported: set[str]) -> str:
    """`zns_x_seconds_bucket` -> `zns_x_seconds` when that histogram is exported."""
    for suffix in HISTOGRAM_SUFFIXES:
        if name.endswith(suffix) and name.removesuffix(suffix) in exported:
            return name.removesuffix(suffix)
    return name
