"""`zns sandbox`: options → SandboxConfig → serve. Loopback only unless --allow-remote."""

from __future__ import annotations

from typing import Annotated

import typer
from pydantic import ValidationError

from zns_dev.sandbox.config import (
    DEFAULT_DAILY_QUOTA,
    DEFAULT_PORT,
    DEFAULT_WEBHOOK_DELAY_MS,
    SandboxConfig,
    is_loopback,
)
from zns_dev.sandbox.server import serve

EXIT_USAGE = 2


def _rate(what: str) -> typer.models.OptionInfo:
    """A fault-rate option: the share of calls (0.0-1.0) that suffer `what`."""
    option: typer.models.OptionInfo = typer.Option(
        min=0.0, max=1.0, help=f"Share of calls: {what}."
    )
    return option


def sandbox_command(  # keyword-only: typer passes options by name
    *,
    host: Annotated[
        str, typer.Option(help="Interface to bind (loopback unless --allow-remote).")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to bind; 0 picks a free one.")] = DEFAULT_PORT,
    latency_ms: Annotated[int, typer.Option(min=0, help="Delay added to every API call.")] = 0,
    oauth_latency_ms: Annotated[int, typer.Option(min=0, help="Delay of the token refresh.")] = 0,
    daily_quota: Annotated[
        int, typer.Option(min=0, help="Messages per OA per day.")
    ] = DEFAULT_DAILY_QUOTA,
    access_token_ttl_s: Annotated[
        int, typer.Option(min=1, help="OA access token lifetime.")
    ] = 90_000,
    access_token_max_sends: Annotated[
        int | None, typer.Option(min=1, help="An access token dies (-124) after N sends.")
    ] = None,
    night_hours: Annotated[
        bool, typer.Option("--night-hours", help="-133 for sends 22:00-06:00 Vietnam time.")
    ] = False,
    refresh_reuse_revokes: Annotated[
        bool,
        typer.Option(
            "--refresh-reuse-revokes", help="Reusing a spent refresh token kills the grant."
        ),
    ] = False,
    fault_100: Annotated[float, _rate("JSON error -100 with HTTP 200")] = 0.0,
    fault_5xx: Annotated[float, _rate("HTTP 502/503 with an HTML body")] = 0.0,
    fault_429: Annotated[float, _rate("HTTP 429")] = 0.0,
    fault_drop: Annotated[float, _rate("connection closed, nothing processed")] = 0.0,
    fault_drop_after_send: Annotated[
        float, _rate("send processed, then the connection closed")
    ] = 0.0,
    stall_rate: Annotated[float, _rate("answered --stall-ms late")] = 0.0,
    stall_ms: Annotated[int, typer.Option(min=0, help="Extra delay of a stalled call.")] = 0,
    fault_endpoint: Annotated[
        list[str] | None,
        typer.Option(help="Limit faults to these calls (repeatable): get-token, send, ..."),
    ] = None,
    seed: Annotated[int | None, typer.Option(help="Seed of the fault dice.")] = None,
    webhook_url: Annotated[
        str | None,
        typer.Option(help="POST signed webhook events (delivery, journey charged) here."),
    ] = None,
    webhook_delay_ms: Annotated[
        int, typer.Option(min=0, help="From an accepted send to its webhook events.")
    ] = DEFAULT_WEBHOOK_DELAY_MS,
    allow_remote: Annotated[
        bool, typer.Option("--allow-remote", help="Allow binding a non-loopback interface.")
    ] = False,
) -> None:
    """Run the sandbox Zalo (API and OAuth on one port) until Ctrl-C.

    It prints, after the address it listens on, the settings a worker needs to use it: its
    well-known test credentials (ZNS_APP_ID=sandbox-app, ZNS_SECRET_KEY=sandbox-secret,
    ZNS_ACCESS_TOKEN=sandbox-access-token, ZNS_REFRESH_TOKEN=sandbox-refresh-token)."""
    if not allow_remote and not is_loopback(host):
        typer.echo(
            f"refusing to bind {host}: the sandbox accepts well-known test credentials; "
            "bind loopback, or pass --allow-remote if you really mean it",
            err=True,
        )
        raise typer.Exit(EXIT_USAGE)
    options = {
        "host": host,
        "port": port,
        "latency_ms": latency_ms,
        "oauth_latency_ms": oauth_latency_ms,
        "daily_quota": daily_quota,
        "access_token_ttl_s": access_token_ttl_s,
        "access_token_max_sends": access_token_max_sends,
        "night_hours": night_hours,
        "refresh_reuse_revokes": refresh_reuse_revokes,
        "fault_100": fault_100,
        "fault_5xx": fault_5xx,
        "fault_429": fault_429,
        "fault_drop": fault_drop,
        "fault_drop_after_send": fault_drop_after_send,
        "stall_rate": stall_rate,
        "stall_ms": stall_ms,
        "seed": seed,
        "webhook_url": webhook_url,
        "webhook_delay_ms": webhook_delay_ms,
    }
    if fault_endpoint:
        options["fault_endpoints"] = frozenset(fault_endpoint)
    try:
        config = SandboxConfig.model_validate(options)
    except ValidationError as exc:
        typer.echo(f"invalid sandbox options: {exc}", err=True)
        raise typer.Exit(EXIT_USAGE) from exc
    try:
        serve(config)
    except OSError as exc:  # port taken, address not on this machine, ...
        typer.echo(f"cannot listen on {host}:{port}: {exc.strerror or exc}", err=True)
        raise typer.Exit(1) from exc
