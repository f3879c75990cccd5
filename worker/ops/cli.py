"""The `zns` command line: parse, call, print, exit code.

Exit codes: 0 success, 1 the operation found a problem (e.g. invalid jobs), 2 usage or
configuration error, 3 a service the command needs (Redis, the broker) is unreachable.
"""

from __future__ import annotations

import getpass
import importlib
import json
import os
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from pydantic import SecretStr
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from worker.errors import ConfigError, InvalidJob, ZnsError
from worker.messaging.names import QUEUE
from worker.ops.flower import flower_command
from worker.ops.health import HealthFile, Verdict
from worker.phone import normalize_phone
from worker.settings import DEFAULT_ACCOUNT, Settings, load_settings
from worker.status import Lookup, ParkReason, StepStatus

if TYPE_CHECKING:  # the commands import what they use: `zns check` (every probe) loads little
    from worker.ops.journey_report import JourneyReport
    from worker.runtime import Runtime

EXIT_PROBLEM = 1
EXIT_USAGE = 2
EXIT_UNAVAILABLE = 3

app = typer.Typer(no_args_is_help=True, add_completion=False, help="Zalo ZNS Journey worker.")
dead_letters_app = typer.Typer(no_args_is_help=True, help="Inspect, replay or purge dead letters.")
parked_app = typer.Typer(no_args_is_help=True, help="Inspect or release parked jobs.")
account_app = typer.Typer(no_args_is_help=True, help="Pause, resume or inspect an account.")
token_app = typer.Typer(no_args_is_help=True, help="OA access tokens: status, refresh, set.")
journey_app = typer.Typer(no_args_is_help=True, help="One customer's journey: tokens and steps.")
app.add_typer(dead_letters_app, name="dead-letters")
app.add_typer(parked_app, name="parked")
app.add_typer(account_app, name="account")
app.add_typer(token_app, name="token")
app.add_typer(journey_app, name="journey")
app.command("flower")(flower_command)

out = out_console = Console()
err = Console(stderr=True)

AccountOpt = Annotated[str, typer.Option("--account", "-a", help="Which OA.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


def _settings() -> Settings:
    try:
        return load_settings()
    except ConfigError as exc:
        err.print(f"[red]configuration error:[/red] {exc}")
        raise typer.Exit(EXIT_USAGE) from None


def _runtime() -> Runtime:
    from worker.runtime import build_runtime  # noqa: PLC0415 (the stores, the sender, httpx)

    return build_runtime(_settings())


def _print_json(value: Any) -> None:
    out.print_json(json.dumps(value, default=str))


# -- worker ------------------------------------------------------------------------------------


@app.command()
def worker(
    concurrency: Annotated[
        int | None, typer.Option("--concurrency", "-c", help="Threads (default: settings).")
    ] = None,
    loglevel: Annotated[str, typer.Option("--loglevel", "-l")] = "INFO",
    hostname: Annotated[str | None, typer.Option("--hostname", "-n")] = None,
) -> None:
    """Run a Celery worker on queue `zns` with our defaults (threads pool)."""
    settings = _settings()
    argv = [
        "-A",
        "tasks.app",
        "worker",
        "-Q",
        QUEUE,
        "-P",
        "threads",
        "-c",
        str(concurrency or settings.celery.concurrency),
        "-l",
        loglevel,
        # Neither is used, and mingle alone waits a full second for neighbours' replies before
        # the first job: it syncs revoked task ids and logical clocks (we revoke nothing and
        # order nothing by Celery's clock; idempotency keys stop duplicates), gossip feeds
        # elections (none here) and makes every worker consume every other's heartbeats.
        # Heartbeats stay on: the consumer's heartbeat keeps `zns check` green.
        "--without-mingle",
        "--without-gossip",
    ]
    if hostname:
        argv += ["-n", hostname]
    _run_celery(argv)


def _run_celery(args: list[str]) -> None:
    """`celery ARGS` in this very process, as `python -m celery` runs it: SIGTERM reaches
    Celery itself, and no second interpreter starts and loads the settings again (an exec cost
    ~0.3 s before the first job). Exits with Celery's exit code."""
    from celery.__main__ import main as celery_main  # noqa: PLC0415 (`zns check` loads no Celery)

    sys.argv = ["celery", *args]
    celery_main()


@app.command()
def check(
    max_age_s: Annotated[
        float, typer.Option(min=1, help="Oldest acceptable heartbeat (liveness).")
    ] = 60.0,
    ready: Annotated[
        bool, typer.Option("--ready", help="Also PING Redis and the broker (readiness).")
    ] = False,
) -> None:
    """Health check for probes. Exit 0 healthy, 1 unhealthy, 2 configuration error.

    Reads the worker's heartbeat file (no broker round trip); with --ready also pings the state
    Redis and connects to the broker.
    """
    settings = _settings()
    verdict = HealthFile(settings.celery.health_file).check(max_age_s=max_age_s)
    if verdict.healthy and ready:
        verdict = _reachable(settings)
    out.print(verdict.reason)
    if not verdict.healthy:
        raise typer.Exit(EXIT_PROBLEM)


def _reachable(settings: Settings) -> Verdict:
    import redis  # noqa: PLC0415
    from kombu import Connection  # noqa: PLC0415

    try:
        client = redis.Redis.from_url(
            settings.redis_url, socket_timeout=2, socket_connect_timeout=2
        )
        client.ping()
        client.close()
    except redis.RedisError as exc:
        return Verdict(False, f"state Redis unreachable: {type(exc).__name__}")
    try:
        with Connection(settings.effective_broker_url, connect_timeout=2) as conn:
            conn.ensure_connection(max_retries=1)
    except Exception as exc:  # kombu raises transport-specific errors
        return Verdict(False, f"broker unreachable: {type(exc).__name__}")
    return Verdict(True, "ok")


# -- enqueue -----------------------------------------------------------------------------------


@app.command()
def enqueue(
    *,
    phone: Annotated[str | None, typer.Option(help="Recipient phone.")] = None,
    template_id: Annotated[str | None, typer.Option(help="ZNS template id.")] = None,
    data: Annotated[str | None, typer.Option(help="template_data as a JSON object.")] = None,
    journey: Annotated[str | None, typer.Option(help="Journey reference (default: phone).")] = None,
    token_type: Annotated[str | None, typer.Option(help="Journey token type.")] = None,
    idempotency_key: Annotated[str | None, typer.Option()] = None,
    tracking_id: Annotated[str | None, typer.Option()] = None,
    step: Annotated[
        int | None, typer.Option(help="Position in the journey: sent after its lower steps.")
    ] = None,
    account: AccountOpt = DEFAULT_ACCOUNT,
    file: Annotated[
        Path | None, typer.Option("--file", "-f", help="JSON lines, one job per line.")
    ] = None,
    skip_invalid: Annotated[
        bool, typer.Option(help="With --file: enqueue the valid jobs, report the others.")
    ] = False,
    lane: Annotated[
        str | None,
        typer.Option(
            help="realtime | bulk (default: realtime for one job, bulk for --file). Realtime "
            "steps overtake their account's bulk backlog."
        ),
    ] = None,
) -> None:
    """Validate and enqueue one job from flags, or many from a JSON-lines file."""
    from worker.producer import Producer  # noqa: PLC0415 (celery import is slow)

    if lane not in (None, "realtime", "bulk"):
        err.print(f"[red]--lane must be realtime or bulk[/red], got {lane!r}")
        raise typer.Exit(EXIT_USAGE)
    producer = Producer(_settings())
    if file is not None:
        _enqueue_file(producer, file, skip_invalid=skip_invalid, lane=lane or "bulk")
        return
    job = {
        "phone": phone,
        "template_id": template_id,
        "template_data": _json_object(data),
        "journey": journey,
        "token_type": token_type,
        "idempotency_key": idempotency_key,
        "tracking_id": tracking_id,
        "account": account,
        "step": step,
        "lane": lane,
    }
    try:
        task_id = producer.enqueue(**{k: v for k, v in job.items() if v is not None})
    except InvalidJob as exc:
        err.print(f"[red]invalid job:[/red] {exc}")
        raise typer.Exit(EXIT_PROBLEM) from None
    out.print(task_id)


def _json_object(text: str | None) -> dict[str, Any] | None:
    if text is None:
        return None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        err.print(f"[red]--data is not JSON:[/red] {exc}")
        raise typer.Exit(EXIT_USAGE) from None
    if not isinstance(value, dict):
        err.print("[red]--data must be a JSON object[/red]")
        raise typer.Exit(EXIT_USAGE)
    return value


def _read_jsonl(path: Path) -> tuple[list[dict[str, Any]], list[tuple[int, str]]]:
    jobs: list[dict[str, Any]] = []
    bad: list[tuple[int, str]] = []
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                value = json.loads(line)
            except json.JSONDecodeError as exc:
                bad.append((number, f"not JSON: {exc.msg}"))
                continue
            if isinstance(value, dict):
                jobs.append(value)
            else:
                bad.append((number, "not a JSON object"))
    return jobs, bad


def _enqueue_file(producer: Any, path: Path, *, skip_invalid: bool, lane: str) -> None:
    from worker.producer import BulkInvalid  # noqa: PLC0415

    if not path.exists():
        err.print(f"[red]no such file:[/red] {path}")
        raise typer.Exit(EXIT_USAGE)
    jobs, unreadable = _read_jsonl(path)
    for number, reason in unreadable:
        err.print(f"[yellow]line {number}:[/yellow] {reason}")
    if unreadable and not skip_invalid:
        err.print("[red]nothing enqueued[/red] (use --skip-invalid to enqueue the valid lines)")
        raise typer.Exit(EXIT_PROBLEM)
    columns = [TextColumn("enqueue"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn()]
    with Progress(*columns, console=err, transient=False) as progress:
        bar = progress.add_task("enqueue", total=len(jobs))
        try:
            report = producer.enqueue_many(
                jobs,
                skip_invalid=skip_invalid,
                lane=lane,
                on_progress=lambda n: progress.advance(bar, n),
            )
        except BulkInvalid as exc:
            for index, reason in exc.rejected:
                err.print(f"[yellow]job #{index}:[/yellow] {reason}")
            err.print("[red]nothing enqueued[/red] (use --skip-invalid to enqueue the valid jobs)")
            raise typer.Exit(EXIT_PROBLEM) from None
    for index, reason in report.rejected:
        err.print(f"[yellow]job #{index} skipped:[/yellow] {reason}")
    out.print(f"enqueued {len(report.task_ids)}, rejected {len(report.rejected) + len(unreadable)}")
    if report.rejected or unreadable:
        raise typer.Exit(EXIT_PROBLEM)


# -- dead letters ------------------------------------------------------------------------------


@dead_letters_app.command("list")
def dead_letters_list(
    limit: Annotated[int, typer.Option(min=1)] = 50,
    offset: Annotated[int, typer.Option(min=0)] = 0,
    as_json: JsonOpt = False,
) -> None:
    """List dead letters, oldest first."""
    rt = _runtime()
    entries = rt.dead_letters.entries(limit=limit, offset=offset)
    if as_json:
        _print_json([json.loads(entry.to_json()) for entry in entries])
        return
    table = Table(title=f"{rt.dead_letters.count()} dead letters")
    table.add_column("id", no_wrap=True, min_width=32)  # whole: `replay` and `purge` take it
    for name in ("dead at (UTC ms)", "account", "class", "code"):
        table.add_column(name)
    table.add_column("reason", overflow="fold")
    for entry in entries:
        table.add_row(
            entry.id,
            str(entry.dead_at_ms),
            entry.account or "-",
            entry.error_class,
            str(entry.code or "-"),
            entry.reason[:80],
        )
    out.print(table)


@dead_letters_app.command("replay")
def dead_letters_replay(
    ids: Annotated[list[str] | None, typer.Argument(help="Dead-letter ids (or --all).")] = None,
    replay_all: Annotated[bool, typer.Option("--all", help="Replay every dead letter.")] = False,
) -> None:
    """Re-enqueue dead letters (after fixing the cause); each leaves the list once enqueued."""
    from worker.ops.actions import replay_dead_letters  # noqa: PLC0415

    rt = _runtime()
    chosen = _chosen_ids(rt, ids, replay_all)
    result = replay_dead_letters(rt, chosen)
    for entry_id, reason in result.kept:
        err.print(f"[yellow]kept {entry_id}:[/yellow] {reason}")
    out.print(f"replayed {len(result.replayed)}, kept {len(result.kept)}")
    if result.kept:
        raise typer.Exit(EXIT_PROBLEM)


@dead_letters_app.command("purge")
def dead_letters_purge(
    ids: Annotated[list[str] | None, typer.Argument(help="Dead-letter ids (or --all).")] = None,
    purge_all: Annotated[bool, typer.Option("--all", help="Purge every dead letter.")] = False,
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask.")] = False,
) -> None:
    """Delete dead letters for good."""
    rt = _runtime()
    chosen = _chosen_ids(rt, ids, purge_all)
    if not yes and not typer.confirm(f"purge {len(chosen)} dead letter(s)?"):
        raise typer.Exit(EXIT_PROBLEM)
    out.print(f"purged {rt.dead_letters.remove(chosen)}")


def _chosen_ids(rt: Runtime, ids: list[str] | None, every: bool) -> list[str]:
    if every == bool(ids):
        err.print("[red]give dead-letter ids or --all (not both)[/red]")
        raise typer.Exit(EXIT_USAGE)
    return rt.dead_letters.all_ids() if every else list(ids or [])


# -- parked ------------------------------------------------------------------------------------


@parked_app.command("list")
def parked_list(
    account: AccountOpt = DEFAULT_ACCOUNT,
    limit: Annotated[int, typer.Option(min=1)] = 50,
    as_json: JsonOpt = False,
) -> None:
    """List parked jobs of an account, soonest first."""
    rt = _runtime()
    jobs = rt.parking.entries(account, limit=limit)
    if as_json:
        _print_json([json.loads(job.to_json()) for job in jobs])
        return
    table = Table(
        "parking id",
        "reason",
        "due at (epoch s)",
        "tracking id",
        "detail",
        title=f"{rt.parking.count(account)} parked for {account}",
    )
    for job in jobs:
        due = "on resume" if job.due_at is None else f"{job.due_at:.0f}"
        table.add_row(
            job.parking_id,
            job.reason.value,
            due,
            str(job.kwargs.get("tracking_id", "")),
            job.detail[:60],
        )
    out.print(table)


@parked_app.command("release")
def parked_release(
    account: AccountOpt = DEFAULT_ACCOUNT,
    reason: Annotated[
        ParkReason | None, typer.Option(help="Only jobs parked for this reason.")
    ] = None,
) -> None:
    """Re-enqueue parked jobs now (all, or those parked for --reason)."""
    from worker.ops.actions import release_parked  # noqa: PLC0415

    rt = _runtime()
    released = release_parked(rt, account, {reason} if reason else None)
    out.print(f"released {released}")


# -- account -----------------------------------------------------------------------------------


@account_app.command("pause")
def account_pause(
    account: Annotated[str, typer.Argument()] = DEFAULT_ACCOUNT,
    reason: Annotated[str, typer.Option()] = "paused by an operator",
) -> None:
    """Pause an account: its jobs park until it is resumed."""
    rt = _runtime()
    created = rt.accounts.pause(account, reason=reason)
    out.print("paused" if created else "already paused")


@account_app.command("resume")
def account_resume(account: Annotated[str, typer.Argument()] = DEFAULT_ACCOUNT) -> None:
    """Resume an account and re-enqueue the jobs parked while it was paused."""
    from worker.ops.actions import resume_account  # noqa: PLC0415

    rt = _runtime()
    was_paused, released = resume_account(rt, account)
    out.print(f"{'resumed' if was_paused else 'was not paused'}; released {released} parked jobs")


@account_app.command("status")
def account_status(
    account: Annotated[str, typer.Argument()] = DEFAULT_ACCOUNT, as_json: JsonOpt = False
) -> None:
    """Pause state, quota, parked jobs, steps waiting in its lanes and in flight."""
    rt = _runtime()
    pause = rt.accounts.status(account)
    view = rt.quota.view(account)
    realtime, bulk = rt.lanes.depth(account)
    status = {
        "account": account,
        "paused": pause is not None,
        "pause_reason": pause.reason if pause else None,
        "pause_code": pause.code if pause else None,
        "paused_since_ms": pause.since_ms if pause else None,
        "remaining_quota": view.remaining,
        "daily_quota": view.daily,
        "parked": rt.parking.count(account),
        "waiting_realtime": realtime,
        "waiting_bulk": bulk,
        "in_flight": rt.lanes.in_flight(account),
    }
    if as_json:
        _print_json(status)
        return
    table = Table("field", "value", title=f"account {account}")
    for name, value in status.items():
        table.add_row(name, "-" if value is None else str(value))
    out.print(table)


# -- tokens ------------------------------------------------------------------------------------


@token_app.command("status")
def token_status(account: AccountOpt = DEFAULT_ACCOUNT, as_json: JsonOpt = False) -> None:
    """Expiry, age and last refresh of the OA token (never the token itself)."""
    rt = _runtime()
    status = rt.access_tokens.status(account)
    pause = rt.accounts.status(account)
    now_ms = int(time.time() * 1000)
    view = {
        "account": account,
        "access_token": "present" if status.has_access_token else "missing",
        "refresh_token": "present" if status.has_refresh_token else "missing",
        "expires_at": _iso(status.access_expires_at_ms),
        "expires_in_s": _seconds(status.access_expires_at_ms, now_ms),
        "last_refresh": _iso(status.refreshed_at_ms),
        "age_s": _seconds(now_ms, status.refreshed_at_ms),
        "generation": status.generation,
        "refresh_in_doubt_since": _iso(status.in_doubt_since_ms),
        "refresh_failures": status.refresh_failures,
        "last_refresh_error": status.last_error,
        "encrypted_at_rest": rt.settings.token_encryption_keys is not None,
        "account_paused": pause.reason if pause else None,
    }
    if as_json:
        _print_json(view)
        return
    table = Table("field", "value", title=f"tokens of {account}")
    for name, value in view.items():
        table.add_row(name, "-" if value is None else str(value))
    out.print(table)
    if status.in_doubt_since_ms is not None:
        err.print(
            "[yellow]the last refresh ended without an answer:[/yellow] Zalo may have rotated "
            "the pair. Sending goes on with the current access token; if it is rejected one "
            "more refresh is tried. To be sure now: re-authorise the OA, then "
            f"`zns token set -a {account}`."
        )
    if pause is not None:
        err.print(f"[red]account paused:[/red] {pause.reason}")


def _iso(value_ms: int | None) -> str | None:
    if value_ms is None:
        return None
    return datetime.fromtimestamp(value_ms / 1000, UTC).isoformat(timespec="seconds")


def _seconds(later_ms: int | None, earlier_ms: int | None) -> int | None:
    if later_ms is None or earlier_ms is None:
        return None
    return (later_ms - earlier_ms) // 1000


@token_app.command("refresh")
def token_refresh(
    account: AccountOpt = DEFAULT_ACCOUNT,
    force: Annotated[
        bool, typer.Option("--force", help="Refresh even while an earlier refresh is in doubt.")
    ] = False,
) -> None:
    """Refresh the OA access token now (single-flight with every worker)."""
    rt = _runtime()
    try:
        grant = rt.access_tokens.refresh_now(account, force=force)
    except ZnsError as exc:
        err.print(f"[red]refresh failed:[/red] {exc}")
        raise typer.Exit(EXIT_PROBLEM) from None
    out.print(f"refreshed: generation {grant.generation}")


@token_app.command("set")
def token_set(
    account: AccountOpt = DEFAULT_ACCOUNT,
    expires_in_s: Annotated[int, typer.Option(min=60, help="Access token lifetime.")] = 90_000,
    resume: Annotated[
        bool, typer.Option("--resume", help="Also resume the account and release its jobs.")
    ] = False,
) -> None:
    """Store a pair from a fresh OA authorisation.

    Reads ZNS_NEW_ACCESS_TOKEN and ZNS_NEW_REFRESH_TOKEN from the environment, else two lines
    from standard input (access token, then refresh token): never from the command line, where
    shell history and `ps` would show them.
    """
    access, refresh = _new_pair_from_env_or_stdin()
    rt = _runtime()
    grant = rt.access_tokens.set_pair(
        account, access_token=access, refresh_token=refresh, expires_in_s=expires_in_s
    )
    out.print(f"stored: generation {grant.generation}")
    if resume:
        from worker.ops.actions import resume_account  # noqa: PLC0415

        was_paused, released = resume_account(rt, account)
        out.print(f"{'resumed' if was_paused else 'was not paused'}; released {released}")
    elif rt.accounts.status(account) is not None:
        out.print(f"account {account} is paused: run `zns account resume {account}` when ready")


def _new_pair_from_env_or_stdin() -> tuple[SecretStr, SecretStr]:
    access = os.environ.get("ZNS_NEW_ACCESS_TOKEN", "").strip()
    refresh = os.environ.get("ZNS_NEW_REFRESH_TOKEN", "").strip()
    if not (access and refresh):
        if sys.stdin.isatty():
            err.print("paste the access token, then the refresh token (input is not echoed)")
            access = getpass.getpass("access token: ").strip()
            refresh = getpass.getpass("refresh token: ").strip()
        else:
            lines = [line.strip() for line in sys.stdin.read().splitlines() if line.strip()]
            access, refresh = [*lines, "", ""][:2]
    if not (access and refresh):
        err.print(
            "[red]need both tokens:[/red] set ZNS_NEW_ACCESS_TOKEN and ZNS_NEW_REFRESH_TOKEN, "
            "or give them on standard input, one per line"
        )
        raise typer.Exit(EXIT_USAGE)
    return SecretStr(access), SecretStr(refresh)


@token_app.command("new-key")
def token_new_key() -> None:
    """Print a new key for ZNS_TOKEN_ENCRYPTION_KEYS (prepend it to rotate)."""
    from cryptography.fernet import Fernet  # noqa: PLC0415

    out.print(Fernet.generate_key().decode())


# -- quota -------------------------------------------------------------------------------------


@app.command()
def quota(
    account: AccountOpt = DEFAULT_ACCOUNT,
    probe: Annotated[bool, typer.Option(help="Ask Zalo now (free of charge).")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Our view of an account's daily quota (and Zalo's, with --probe)."""
    rt = _runtime()
    if probe:
        rt.sender.probe_quota(account)
    view = rt.quota.view(account)
    status = {
        "account": account,
        "remaining": view.remaining,
        "daily": view.daily,
        "updated_at_ms": view.updated_at_ms,
    }
    if as_json:
        _print_json(status)
        return
    remaining = "unknown" if view.remaining is None else view.remaining
    daily = "unknown" if view.daily is None else view.daily
    out.print(f"{account}: remaining {remaining} of {daily}")


# -- status and journeys -----------------------------------------------------------------------

#: Status fields shown in the table, in life order (times are epoch ms, shown in UTC).
STATUS_FIELDS = (
    "idempotency_key",
    "tracking_id",
    "step",
    "journey",
    "phone",
    "template_id",
    "enqueued_at_ms",
    "parked_reason",
    "parked_until_ms",
    "sent_at_ms",
    "msg_id",
    "journey_id",
    "delivered_at_ms",
    "dead_at_ms",
    "dead_reason",
    "dead_code",
)


@app.command()
def status(
    value: Annotated[str, typer.Argument(help="The step's idempotency key (or see --by).")],
    by: Annotated[Lookup, typer.Option("--by", help="What VALUE is.")] = Lookup.IDEMPOTENCY_KEY,
    account: AccountOpt = DEFAULT_ACCOUNT,
    as_json: JsonOpt = False,
) -> None:
    """A step's life: enqueued, parked, sent (msg_id), delivered, dead-lettered (reason).
    Exit 1 when nothing is recorded for VALUE."""
    found = _runtime().status.get(account, value, by)
    if found is None:
        err.print(f"no status recorded for {by.value} {value!r} (account {account})")
        raise typer.Exit(EXIT_PROBLEM)
    if as_json:
        _print_json(found.as_dict())
        return
    out.print(_status_table(found, title=f"{found.state}"))


def _status_table(found: StepStatus, *, title: str) -> Table:
    table = Table("field", "value", title=title)
    for name in STATUS_FIELDS:
        value = found.get(name)
        if value is not None:
            shown = _iso(int(value)) if name.endswith("_ms") and value.isdigit() else value
            table.add_row(name.removesuffix("_ms"), str(shown))
    return table


@journey_app.command("show")
def journey_show(
    phone: Annotated[str, typer.Option("--phone", help="The customer's phone (any form).")],
    journey: Annotated[
        str | None, typer.Option("--journey", help="The producer's journey (default: the phone).")
    ] = None,
    account: AccountOpt = DEFAULT_ACCOUNT,
    as_json: JsonOpt = False,
) -> None:
    """Journey id, token type, created and expiry times (never the token), steps sent and
    delivered, and whether Zalo charged the journey. Exit 1 when nothing is recorded."""
    try:
        normalised = normalize_phone(phone)
    except InvalidJob as exc:
        err.print(f"[red]bad phone:[/red] {exc}")
        raise typer.Exit(EXIT_USAGE) from None
    rt = _runtime()
    from worker.ops.journey_report import journey_report  # noqa: PLC0415

    report = journey_report(
        rt.journey_tokens,
        rt.status,
        account=account,
        phone=normalised,
        journey=journey or normalised,
    )
    if as_json:
        _print_json(report.as_dict())
    else:
        _print_journey(report)
    if not report.tokens and not report.steps:
        raise typer.Exit(EXIT_PROBLEM)


def _print_journey(report: JourneyReport) -> None:
    out.print(f"journey {report.journey} of {report.phone} (account {report.account})")
    for token in report.tokens:
        out.print(
            f"  token {token.token_type}: journey_id {token.journey_id}, created "
            f"{_iso(token.created_at_ms)}, expires {_iso(token.expires_at_ms)}"
        )
    charged = "yes" if report.charged else "no"
    timed_out = ", timed out" if report.timed_out else ""
    out.print(
        f"  steps sent {report.sent} of {len(report.steps)}, delivered {report.delivered}, "
        f"charged {charged}{timed_out}"
    )
    table = Table("step", "state", "tracking id", "msg id", "sent", "delivered", "detail")
    for step in report.steps:
        table.add_row(
            step.get("step") or "-",
            step.state,
            step.get("tracking_id") or "",
            step.get("msg_id") or "",
            _iso(_ms_field(step, "sent_at_ms")) or "",
            _iso(_ms_field(step, "delivered_at_ms")) or "",
            (step.get("dead_reason") or step.get("parked_reason") or "")[:50],
        )
    out.print(table)


def _ms_field(step: StepStatus, name: str) -> int | None:
    value = step.get(name)
    return int(value) if value is not None and value.isdigit() else None


# -- webhooks ----------------------------------------------------------------------------------


@app.command()
def webhooks(
    host: Annotated[
        str | None, typer.Option(help="Interface to bind (default: ZNS_WEBHOOKS__HOST).")
    ] = None,
    port: Annotated[
        int | None,
        typer.Option(min=0, max=65_535, help="Port (default: ZNS_WEBHOOKS__PORT); 0: a free one."),
    ] = None,
) -> None:
    """Receive Zalo's webhook events: deliveries, journeys charged or timed out, quota changes,
    revoked permissions. Exit 2 when no account can verify signatures."""
    from worker.logs import configure_logging  # noqa: PLC0415
    from worker.webhooks.directory import AccountDirectory  # noqa: PLC0415
    from worker.webhooks.server import serve  # noqa: PLC0415 (starlette, uvicorn: only here)

    settings = _settings()
    chosen = {"host": host, "port": port}
    hooks = settings.webhooks.model_copy(update={k: v for k, v in chosen.items() if v is not None})
    settings = settings.model_copy(update={"webhooks": hooks})
    if not AccountDirectory.from_settings(settings):
        err.print(
            "[red]configuration error:[/red] no account has an app id and a secret key "
            "(ZNS_APP_ID + ZNS_WEBHOOK_SECRET_KEY or ZNS_SECRET_KEY, or ZNS_ACCOUNTS__<NAME>__…)"
        )
        raise typer.Exit(EXIT_USAGE)
    configure_logging(fmt=settings.log_format, level=settings.log_level)
    try:
        serve(settings)
    except OSError as exc:  # port taken, address not on this machine, ...
        err.print(f"cannot listen on {hooks.host}:{hooks.port}: {exc.strerror or exc}")
        raise typer.Exit(EXIT_PROBLEM) from exc


# -- developer tools (zns_dev, not in the image) -----------------------------------------------

DEV_COMMANDS = {
    "sandbox": "the local stand-in for Zalo's API",
    "demo": "sandbox Zalo + a worker + a sample journey set, with progress and a summary",
    "bench": "raw vs naive vs ours against the sandbox",
}
DEV_INSTALL = "pip install -e ./devtools (from a clone of the repository; `make` does it)"


def _dev_command(name: str, summary: str) -> None:
    """`zns NAME …` runs `zns_dev`'s command when the developer tools are installed."""

    @app.command(
        name,
        help=f"Developer tool: {summary} (`zns {name} --help` for its options).",
        context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
        add_help_option=False,
    )
    def run(ctx: typer.Context) -> None:
        try:
            commands = importlib.import_module("zns_dev.commands")
        except ModuleNotFoundError:
            message = f"`zns {name}` is a developer tool, not part of this install: {DEV_INSTALL}"
            err.print(message, soft_wrap=True, markup=False)
            raise typer.Exit(EXIT_USAGE) from None
        commands.app(args=[name, *ctx.args], prog_name="zns")


for _name, _summary in DEV_COMMANDS.items():
    _dev_command(_name, _summary)


def main() -> None:
    """Console-script entry point: one line and exit 3 when a service is unreachable."""
    try:
        app()
    except Exception as exc:
        unreachable = _unreachable(exc)
        if unreachable is None:
            raise
        print(f"zns: {unreachable}", file=sys.stderr)
        sys.exit(EXIT_UNAVAILABLE)


def _unreachable(exc: BaseException) -> str | None:
    """Which service cannot be reached, at which address (no password), and why: one line;
    None when `exc` is not about reaching Redis or the broker."""
    import kombu.exceptions  # noqa: PLC0415 (only on this path)
    import redis  # noqa: PLC0415
    from kombu.utils.url import maybe_sanitize_url  # noqa: PLC0415

    settings = load_settings()
    if isinstance(exc, kombu.exceptions.OperationalError):
        service, url = "broker", settings.effective_broker_url
    elif isinstance(exc, redis.ConnectionError | redis.TimeoutError):
        service, url = "state Redis", settings.redis_url
    else:
        return None
    reason = " ".join(str(exc).split())[:200]
    return f"{service} at {maybe_sanitize_url(url)} cannot be reached: {reason}"


if __name__ == "__main__":
    main()
