"""Chaos suite plumbing: two tiers, the markers, one `Chaos` world per scenario, the report.

Tiers:
- short (default, part of the normal `pytest` run): the fast scenarios at small sizes;
- full (`make chaos`, i.e. `pytest tests/chaos --chaos-full`): every scenario at full size.
Scenarios marked `chaos_full` are deselected unless `--chaos-full` is given.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterator
from pathlib import Path

import pytest

from tests.chaos.harness import Chaos
from tests.chaos.report import Row, format_table, write_json
from tests.support import REPO

FULL_OPTION = "--chaos-full"
_ROWS = pytest.StashKey[list[Row]]()
_OUTCOME = pytest.StashKey[str]()
RESULTS_DIR = REPO / "bench-results"


def pytest_addoption(parser: pytest.Parser) -> None:
    """`--chaos-full`: run every scenario at full size (the `make chaos` tier)."""
    parser.addoption(
        FULL_OPTION,
        action="store_true",
        default=False,
        help="run the full chaos tier (every scenario, full size); default: the short subset",
    )


def is_full(config: pytest.Config) -> bool:
    """Whether this run is the full chaos tier."""
    return bool(config.getoption("chaos_full", default=False))


def pytest_configure(config: pytest.Config) -> None:
    """Register the markers (the run uses --strict-markers) and the row store."""
    config.addinivalue_line("markers", "chaos: a chaos scenario (tests/chaos)")
    config.addinivalue_line(
        "markers", "chaos_full: a chaos scenario of the full tier only (make chaos)"
    )
    config.stash[_ROWS] = []


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark everything here `chaos`; deselect the full tier unless asked for."""
    chaos_dir = Path(__file__).parent
    keep, drop = [], []
    for item in items:
        if chaos_dir in item.path.parents:
            item.add_marker(pytest.mark.chaos)
            if item.get_closest_marker("chaos_full") and not is_full(config):
                drop.append(item)
                continue
        keep.append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


def pytest_terminal_summary(
    terminalreporter: pytest.TerminalReporter, config: pytest.Config
) -> None:
    """The results table, and the JSON file beside it."""
    rows = config.stash.get(_ROWS, [])
    if not rows:
        return
    tier = "full" if is_full(config) else "short"
    path = RESULTS_DIR / ("chaos.json" if tier == "full" else "chaos-short.json")
    write_json(rows, path, tier)
    terminalreporter.write_sep("=", f"chaos scenarios ({tier} tier)")
    terminalreporter.write_line(format_table(rows))
    terminalreporter.write_line(f"written to {path.relative_to(REPO)}")


@pytest.fixture
def tier(request: pytest.FixtureRequest) -> str:
    """ "full" under `make chaos`, else "short"."""
    return "full" if is_full(request.config) else "short"


@pytest.fixture
def size(tier: str) -> Callable[[int, int], int]:
    """`size(short, full)`: the figure for this tier."""
    return lambda short, full: full if tier == "full" else short


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Keep the test's own outcome, so its report rows can say how it ended."""
    report = yield
    if call.when == "call":
        if hasattr(report, "wasxfail"):
            item.stash[_OUTCOME] = "XPASS" if report.passed else "XFAIL"
        else:
            item.stash[_OUTCOME] = "" if report.passed else "FAILED"
    return report


@pytest.fixture
def record(request: pytest.FixtureRequest, tier: str) -> Iterator[Callable[[Row], None]]:
    """Add a scenario's row to the report (call it before asserting, so failures show too);
    the row then says whether its test failed (or was an expected failure)."""
    rows = request.config.stash[_ROWS]
    mine: list[Row] = []

    def add(row: Row) -> None:
        row.tier = tier
        rows.append(row)
        mine.append(row)

    yield add
    outcome = request.node.stash.get(_OUTCOME, "FAILED")
    for row in mine:
        row.outcome = outcome
        row.passed = outcome in ("", "XPASS")


@pytest.fixture
def chaos_dir(tmp_path: Path) -> Path:
    """The scenario's directory: Redis's AOF and the worker logs."""
    return tmp_path


@pytest.fixture
def new_chaos(chaos_dir: Path) -> Iterator[Callable[..., Chaos]]:
    """Build a scenario's world (`new_chaos(sandbox=..., appendonly=..., broker_url=...)`);
    stopped at the end of the test, worker logs kept in the test's tmp_path."""
    worlds: list[Chaos] = []

    def build(**options: object) -> Chaos:
        world = Chaos(chaos_dir / f"world-{len(worlds)}", **options)  # type: ignore[arg-type]
        world.workdir.mkdir(parents=True, exist_ok=True)
        worlds.append(world)
        return world.__enter__()

    yield build
    for world in reversed(worlds):
        world.__exit__(None, None, None)
