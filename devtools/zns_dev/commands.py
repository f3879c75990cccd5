"""`zns sandbox`, `zns demo` and `zns bench`: the developer commands, run by `zns` when this
distribution is installed (`worker/ops/cli.py` hands them their arguments)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from zns_dev.bench import Focus, run_bench
from zns_dev.demo import run_demo
from zns_dev.sandbox.command import sandbox_command

#: Plain help (not typer's rich panels, which cut long option names at 80 columns).
app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    help="zns developer tools.",
    rich_markup_mode=None,
)
app.command("sandbox")(sandbox_command)
console = Console()


# -- bench -------------------------------------------------------------------------------------


@app.command()
def bench(
    smoke: Annotated[bool, typer.Option("--smoke", help="A small, quick run (CI).")] = False,
    out: Annotated[Path, typer.Option(help="Where to write the JSON results.")] = Path(
        "bench-results/bench.json"
    ),
    latency_ms: Annotated[
        int | None, typer.Option(help="Only the raw/naive/ours runs at this latency.")
    ] = None,
    processes: Annotated[
        int | None, typer.Option(help="Only the raw/naive/ours runs with this many processes.")
    ] = None,
    only: Annotated[
        str | None,
        typer.Option(help="Only these parts, comma-separated: triples,enqueue,rate,fairness."),
    ] = None,
) -> None:
    """Benchmark raw vs naive vs ours against the sandbox; prints a table, writes JSON."""
    parts = set((only or "triples,enqueue,rate,fairness").split(","))
    focus = Focus(
        latency_ms=latency_ms,
        processes=processes,
        triples="triples" in parts,
        enqueue="enqueue" in parts,
        rate_limit="rate" in parts,
        fairness="fairness" in parts,
    )
    run_bench(smoke=smoke, out=out, console=console, focus=focus)


# -- demo --------------------------------------------------------------------------------------


@app.command()
def demo(
    orders: Annotated[int, typer.Option(min=1, max=1000, help="Orders (journeys).")] = 30,
    latency_ms: Annotated[int, typer.Option(min=0, help="Sandbox latency.")] = 100,
    redis_url: Annotated[
        str | None,
        typer.Option(
            help="Use this Redis instead of a private redis-server: the demo writes its keys "
            "there (prefix zns-demo, queue zns, Celery's results) and deletes them at the end."
        ),
    ] = None,
) -> None:
    """Sandbox Zalo + a worker + a sample logistics journey set, with progress and a summary."""
    code = run_demo(orders=orders, latency_ms=latency_ms, console=console, redis_url=redis_url)
    raise typer.Exit(code)
