"""`zns flower`: Celery Flower for our app, behind HTTP basic auth unless refused explicitly.

Credentials come from `ZNS_FLOWER_BASIC_AUTH` (`user:password`, several comma-separated; `.env`
is read too) and reach Flower through its own environment variable, never through argv (which
`ps` shows to every user of the machine) and never through anything we print.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from typing import Annotated

import typer
from pydantic import SecretStr, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

EXIT_USAGE = 2
DEFAULT_PORT = 5555  # Flower's own default
DEFAULT_ADDRESS = "127.0.0.1"  # loopback unless asked: a container passes --address 0.0.0.0
#: Flower keeps every task it has seen in memory; a billing run enqueues 500k. Bounded memory.
DEFAULT_MAX_TASKS = 10_000
#: KEDA scales worker pods in and out; forget a gone worker after an hour instead of never.
PURGE_OFFLINE_WORKERS_S = 3600
#: Flower reads its options from FLOWER_<OPTION> variables; the value is split on commas.
FLOWER_AUTH_VAR = "FLOWER_BASIC_AUTH"
AUTH_VAR = "ZNS_FLOWER_BASIC_AUTH"


class FlowerSettings(BaseSettings):
    """Flower's own settings (`ZNS_FLOWER_*`), kept out of the worker's Settings."""

    model_config = SettingsConfigDict(
        env_prefix="ZNS_FLOWER_", env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

    basic_auth: SecretStr | None = None


class BadCredentials(ValueError):
    """ZNS_FLOWER_BASIC_AUTH is malformed; the message never holds the credentials."""


def parse_basic_auth(value: SecretStr) -> list[str]:
    """`user:password[,…]` -> the pairs; raises BadCredentials naming positions, never values."""
    pairs = [part.strip() for part in value.get_secret_value().split(",")]
    if not any(pairs):
        raise BadCredentials(f"{AUTH_VAR} is empty")
    for number, pair in enumerate(pairs, start=1):
        user, colon, password = pair.partition(":")
        if not (colon and user and password):
            raise BadCredentials(
                f"{AUTH_VAR}: entry #{number} is not user:password "
                "(several are separated by commas, so a password cannot hold one)"
            )
    return pairs


def flower_argv(
    *, port: int, address: str, max_tasks: int = DEFAULT_MAX_TASKS, url_prefix: str | None = None
) -> list[str]:
    """The Flower command line: Celery's `flower` on our app; no credentials in it."""
    argv = [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "tasks.flower_app",
        "flower",
        f"--port={port}",
        f"--address={address}",
        f"--max_tasks={max_tasks}",
        f"--purge_offline_workers={PURGE_OFFLINE_WORKERS_S}",
    ]
    if url_prefix:
        argv.append(f"--url_prefix={url_prefix}")
    return argv


def flower_env(environ: Mapping[str, str], credentials: list[str] | None) -> dict[str, str]:
    """Flower's environment: basic auth from `credentials`, or none at all when None."""
    env = {k: v for k, v in environ.items() if k not in (FLOWER_AUTH_VAR, AUTH_VAR)}
    if credentials is not None:
        env[FLOWER_AUTH_VAR] = ",".join(credentials)
    return env


def _credentials(no_auth: bool) -> list[str] | None:
    if no_auth:
        typer.echo("warning: Flower without authentication (--no-auth)", err=True)
        return None
    secret = FlowerSettings().basic_auth
    if secret is None:
        typer.echo(
            f"refusing to start Flower without authentication: set {AUTH_VAR}=user:password "
            "(several comma-separated), or pass --no-auth if you really mean it",
            err=True,
        )
        raise typer.Exit(EXIT_USAGE)
    try:
        return parse_basic_auth(secret)
    except BadCredentials as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(EXIT_USAGE) from None


def flower_command(
    *,
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port to listen on.")] = DEFAULT_PORT,
    address: Annotated[
        str, typer.Option(help="Interface to bind (0.0.0.0 inside a container).")
    ] = DEFAULT_ADDRESS,
    max_tasks: Annotated[
        int, typer.Option(min=100, help="Tasks Flower keeps in memory.")
    ] = DEFAULT_MAX_TASKS,
    url_prefix: Annotated[
        str | None, typer.Option(help="Serve under this path (behind a reverse proxy).")
    ] = None,
    no_auth: Annotated[
        bool, typer.Option("--no-auth", help="Run without basic auth (never in production).")
    ] = False,
) -> None:
    """Run Celery Flower on our app, with basic auth from ZNS_FLOWER_BASIC_AUTH."""
    try:
        credentials = _credentials(no_auth)
    except ValidationError:  # e.g. an unreadable .env; pydantic's message would show values
        typer.echo(f"cannot read {AUTH_VAR}", err=True)
        raise typer.Exit(EXIT_USAGE) from None
    argv = flower_argv(port=port, address=address, max_tasks=max_tasks, url_prefix=url_prefix)
    # exec: SIGTERM from the container runtime reaches Flower itself.
    os.execve(sys.executable, argv, flower_env(os.environ, credentials))  # noqa: S606
