"""The chaos report: one row per scenario, printed as a table at the end of the run and written
to `bench-results/chaos.json` (full tier) or `bench-results/chaos-short.json` (short tier)."""

from __future__ import annotations

import json
import math
import platform
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tests.chaos.harness import Tally

COLUMNS = (
    ("scenario", "scenario", "<"),
    ("enqueued", "steps", ">"),
    ("sent_once", "once", ">"),
    ("sent_twice", "twice", ">"),
    ("lost", "lost", ">"),
    ("dead_lettered", "dead", ">"),
    ("drain_s", "drain s", ">"),
    ("notes", "notes", "<"),
)


@dataclass
class Row:
    """One scenario's figures."""

    scenario: str
    tier: str
    enqueued: int
    sent_once: int
    sent_twice: int
    lost: int
    dead_lettered: int
    drain_s: float
    extra_sends: int = 0
    sent_and_dead: int = 0
    failed_results: int = 0
    passed: bool = True
    outcome: str = ""  # "", FAILED, XFAIL (a known bug), XPASS
    notes: str = ""
    details: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_tally(
        cls, scenario: str, tier: str, counts: Tally, drain_s: float, **extra: Any
    ) -> Row:
        """A row from a tally plus the drain time and any notes/details."""
        return cls(
            scenario=scenario,
            tier=tier,
            enqueued=counts.enqueued,
            sent_once=counts.sent_once,
            sent_twice=counts.sent_twice,
            lost=counts.lost,
            dead_lettered=counts.dead_lettered,
            drain_s=round(drain_s, 1) if math.isfinite(drain_s) else drain_s,
            extra_sends=counts.extra_sends,
            sent_and_dead=counts.sent_and_dead,
            failed_results=counts.failed_results,
            **extra,
        )


def _cell(row: Row, name: str) -> str:
    value = getattr(row, name)
    if name == "scenario" and row.outcome:
        return f"{value} ({row.outcome})"
    if isinstance(value, float):
        return f"{value:.1f}" if math.isfinite(value) else "timeout"
    return str(value)


def format_table(rows: list[Row]) -> str:
    """A plain-text table, one line per scenario."""
    cells = [[_cell(row, name) for name, _, _ in COLUMNS] for row in rows]
    widths = [
        max([len(title), *(len(line[i]) for line in cells)])
        for i, (_, title, _) in enumerate(COLUMNS)
    ]
    widths[-1] = len(COLUMNS[-1][1])  # notes run free

    def line(values: list[str]) -> str:
        parts = [
            f"{value:{align}{width}}"
            for value, width, (_, _, align) in zip(values, widths, COLUMNS, strict=True)
        ]
        return "  ".join(parts).rstrip()

    header = line([title for _, title, _ in COLUMNS])
    rule = "-" * min(len(header) + 40, 160)
    return "\n".join([header, rule, *(line(values) for values in cells)])


def _finite(row: dict[str, Any]) -> dict[str, Any]:
    """JSON has no infinity: a drain that timed out is null."""
    drain = row["drain_s"]
    return {**row, "drain_s": drain if math.isfinite(drain) else None}


def write_json(rows: list[Row], path: Path, tier: str) -> None:
    """The rows with the run's context, for later comparison."""
    path.parent.mkdir(parents=True, exist_ok=True)
    body = {
        "generated_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "tier": tier,
        "machine": {"python": platform.python_version(), "platform": platform.platform()},
        "rows": [_finite(asdict(row)) for row in rows],
    }
    path.write_text(json.dumps(body, indent=2, ensure_ascii=False) + "\n")
