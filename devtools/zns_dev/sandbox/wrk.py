"""`python -m zns_dev.sandbox.wrk`: measure the sandbox's send rate with wrk.

Starts a sandbox per latency in a subprocess, gets a journey token, then runs
`wrk -s wrk_send.lua` against POST /message/template and prints wrk's report and a summary.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Annotated, Final

import httpx
import typer

from zns_dev.sandbox.config import SandboxConfig
from zns_dev.sandbox.server import running_sandbox

WRK_SCRIPT: Final = Path(__file__).with_name("wrk_send.lua")
BENCH_PHONE: Final = "84987654321"
_RATE = re.compile(r"^Requests/sec:\s+([\d.]+)", re.MULTILINE)


def wrk_command(
    base_url: str, journey_token: str, *, connections: int, duration_s: int, threads: int
) -> list[str]:
    """The wrk command line that hammers the send endpoint with a valid token."""
    return [
        shutil.which("wrk") or "wrk",
        f"-t{threads}",
        f"-c{connections}",
        f"-d{duration_s}s",
        "-s",
        str(WRK_SCRIPT),
        f"{base_url}/message/template",
        "--",
        journey_token,
    ]


def journey_token(base_url: str, config: SandboxConfig) -> str:
    """A fresh journey token for the bench phone."""
    response = httpx.post(
        f"{base_url}/journey/get-token",
        headers={"access_token": config.access_token},
        json={"phone": BENCH_PHONE},
    )
    token: str = response.raise_for_status().json()["token"]
    return token


def measure(latency_ms: int, *, connections: int, duration_s: int, threads: int) -> float:
    """Requests per second wrk reached against a fresh sandbox with this latency."""
    config = SandboxConfig(port=0, latency_ms=latency_ms)
    with running_sandbox(config) as base_url:
        command = wrk_command(
            base_url,
            journey_token(base_url, config),
            connections=connections,
            duration_s=duration_s,
            threads=threads,
        )
        shown = [*command[:-1], "<journey token>"]  # tokens are never printed, even sandbox ones
        typer.echo("$ " + " ".join(shown))
        report = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    typer.echo(report)
    match = _RATE.search(report)
    if match is None:
        raise RuntimeError("wrk printed no Requests/sec line")
    return float(match.group(1))


def bench(
    latency_ms: Annotated[
        list[int] | None, typer.Option(help="Repeatable; default 0 and 100.")
    ] = None,
    connections: Annotated[int, typer.Option(min=1)] = 200,
    duration_s: Annotated[int, typer.Option(min=1)] = 10,
    threads: Annotated[int, typer.Option(min=1)] = 2,
) -> None:
    """Measure POST /message/template throughput at each latency."""
    results = {
        latency: measure(latency, connections=connections, duration_s=duration_s, threads=threads)
        for latency in (latency_ms or [0, 100])
    }
    for latency, rate in results.items():
        typer.echo(f"latency {latency:>4} ms, {connections} connections: {rate:,.0f} req/s")


if __name__ == "__main__":
    typer.run(bench)
