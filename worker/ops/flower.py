"""`zns flower`: Celery Flower for our app, behind HTTP basic auth unless refused explicitly.

Credentials come from `ZNS_FLOWER_BASIC_AUTH` (`user:password`, several comma-separated; `.env`
is read too) and reach Flower through its own environment variable, never through argv (which
`ps` shows to every user of the machine) and never through anything we print.

Flower's Broker page and `/api/queues/length` need nothing more on a Redis broker; on RabbitMQ
they read queue lengths from the management plugin's HTTP API. Its URL is `ZNS_FLOWER_BROKER_API`
(it holds a password, so it travels like the basic auth), else derived from the broker URL: the
API root (`…/api/`, no vhost: Flower takes the vhost from the broker URL) on the broker's host,
with the broker's credentials, `http` on 15672 for `amqp://`, `https` on 15671 for `amqps://`.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from typing import Annotated
from urllib.parse import urlsplit

import typer
from pydantic import SecretStr, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from worker.settings import Settings

EXIT_USAGE = 2
DEFAULT_PORT = 5555  # Flower's own default
DEFAULT_ADDRESS = "127.0.0.1"  # loopback unless asked: a container passes --address 0.0.0.0
#: Flower keeps every task it has seen in memory; a billing run enqueues 500k. Bounded memory.
DEFAULT_MAX_TASKS = 10_000
#: KEDA scales worker pods in and out; forget a gone worker after an hour instead of never.
PURGE_OFFLINE_WORKERS_S = 3600
#: Flower reads its options from FLOWER_<OPTION> variables (a list option's split on commas).
FLOWER_AUTH_VAR = "FLOWER_BASIC_AUTH"
AUTH_VAR = "ZNS_FLOWER_BASIC_AUTH"
FLOWER_BROKER_API_VAR = "FLOWER_BROKER_API"
BROKER_API_VAR = "ZNS_FLOWER_BROKER_API"
#: The management plugin's default listeners; TLS on the TLS broker, so its password never
#: crosses the network in clear.
MANAGEMENT_API = {"amqp": ("http", 15672), "amqps": ("https", 15671)}


class FlowerSettings(BaseSettings):
    """Flower's own settings (`ZNS_FLOWER_*`), kept out of the worker's Settings."""

    model_config = SettingsConfigDict(
        env_prefix="ZNS_FLOWER_", env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

    basic_auth: SecretStr | None = None
    #: RabbitMQ management API root for the Broker page, e.g. http://user:pw@host:15672/api/
    broker_api: SecretStr | None = None


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


class BadBrokerApi(ValueError):
    """ZNS_FLOWER_BROKER_API is not an API root URL; the message never holds the URL."""


def check_broker_api(value: SecretStr) -> str:
    """The management API root, as Flower joins `queues/<vhost>` to it; raises BadBrokerApi."""
    url = value.get_secret_value().strip()
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise BadBrokerApi(f"{BROKER_API_VAR} must be an http:// or https:// URL with a host")
    if not parts.path.endswith("/"):
        # Flower resolves `queues/<vhost>` against it: without the slash the last segment goes.
        raise BadBrokerApi(
            f"{BROKER_API_VAR} must be the API root ending in a slash, e.g. "
            "http://user:password@host:15672/api/ (no vhost: Flower takes it from the broker URL)"
        )
    return url


def default_broker_api(broker_url: str) -> str | None:
    """The management API root of an `amqp(s)://` broker (its host and credentials); else None."""
    first = urlsplit(broker_url.split(";", 1)[0])  # a failover list: the first broker
    if first.scheme not in MANAGEMENT_API:
        return None
    scheme, port = MANAGEMENT_API[first.scheme]
    userinfo, at, _ = first.netloc.rpartition("@")  # kept percent-encoded; Flower unquotes it
    host = first.hostname or "localhost"
    if ":" in host:
        host = f"[{host}]"
    return f"{scheme}://{userinfo}{at}{host}:{port}/api/"


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


def flower_env(
    environ: Mapping[str, str], credentials: list[str] | None, broker_api: str | None = None
) -> dict[str, str]:
    """Flower's environment: basic auth from `credentials` (none at all when None), and the
    management API URL when there is one; inherited values of either never pass through."""
    ours = (FLOWER_AUTH_VAR, AUTH_VAR, FLOWER_BROKER_API_VAR, BROKER_API_VAR)
    env = {k: v for k, v in environ.items() if k not in ours}
    if credentials is not None:
        env[FLOWER_AUTH_VAR] = ",".join(credentials)
    if broker_api is not None:
        env[FLOWER_BROKER_API_VAR] = broker_api
    return env


def _credentials(no_auth: bool, settings: FlowerSettings) -> list[str] | None:
    if no_auth:
        typer.echo("warning: Flower without authentication (--no-auth)", err=True)
        return None
    secret = settings.basic_auth
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


def _broker_api(settings: FlowerSettings, broker_url: str) -> str | None:
    if settings.broker_api is None:
        return default_broker_api(broker_url)
    if default_broker_api(broker_url) is None:
        typer.echo(f"warning: {BROKER_API_VAR} is ignored: the broker is not RabbitMQ", err=True)
        return None
    try:
        return check_broker_api(settings.broker_api)
    except BadBrokerApi as exc:
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
        settings = FlowerSettings()
        broker_url = Settings().effective_broker_url
    except ValidationError:  # e.g. an unreadable .env; pydantic's message would show values
        typer.echo("cannot read the settings (ZNS_* variables or .env)", err=True)
        raise typer.Exit(EXIT_USAGE) from None
    credentials = _credentials(no_auth, settings)
    broker_api = _broker_api(settings, broker_url)
    argv = flower_argv(port=port, address=address, max_tasks=max_tasks, url_prefix=url_prefix)
    env = flower_env(os.environ, credentials, broker_api)
    # exec: SIGTERM from the container runtime reaches Flower itself.
    os.execve(sys.executable, argv, env)  # noqa: S606
