"""The `zns` operator commands, in-process (typer runner), against the private Redis and sandbox."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import redis
from cryptography.fernet import Fernet
from typer.testing import CliRunner

from worker.job import parse_job
from worker.messaging.names import BATCH_TASK_NAME, QUEUE
from worker.ops.cli import EXIT_UNAVAILABLE, app
from worker.runtime import Runtime
from worker.state.keys import Keys
from worker.state.step_gate import Begin, StepKeys
from worker.status import ParkReason
from zns_dev.sandbox.control import SandboxControl

runner = CliRunner()


@pytest.fixture
def env(
    worker_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> dict[str, str]:
    monkeypatch.chdir(tmp_path)  # no stray .env
    return worker_env


def zns(env: dict[str, str], *args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args), env=env)
    return result.exit_code, result.output


def queued(redis_url: str) -> int:
    """Journey steps on the queue (a bulk message carries several)."""
    client = redis.Redis.from_url(redis_url)
    try:
        return sum(_steps_in(json.loads(raw)) for raw in client.lrange(QUEUE, 0, -1))
    finally:
        client.close()


def _steps_in(message: dict[str, Any]) -> int:
    _args, kwargs, _embed = json.loads(base64.b64decode(message["body"]))
    return len(kwargs["steps"]) if message["headers"]["task"] == BATCH_TASK_NAME else 1


def test_enqueue_one_from_flags(env: dict[str, str], redis_url: str) -> None:
    code, output = zns(
        env, "enqueue", "--phone", "0987654321", "--template-id", "1", "--data", '{"a": "b"}'
    )
    assert code == 0, output
    assert queued(redis_url) == 1


def test_enqueue_rejects_a_bad_phone_with_a_clear_message(
    env: dict[str, str], redis_url: str
) -> None:
    code, output = zns(env, "enqueue", "--phone", "12", "--template-id", "1", "--data", '{"a": 1}')
    assert code == 1
    assert "invalid job" in output and "phone" in output
    assert queued(redis_url) == 0


def test_enqueue_data_must_be_a_json_object(env: dict[str, str]) -> None:
    code, output = zns(
        env, "enqueue", "--phone", "0987654321", "--template-id", "1", "--data", "[1]"
    )
    assert code == 2
    assert "JSON object" in output


def test_enqueue_file_all_or_nothing_then_skip_invalid(
    env: dict[str, str], redis_url: str, tmp_path: Path
) -> None:
    good = {"phone": "0987654321", "template_id": "7", "template_data": {"a": 1}}
    lines = [json.dumps({**good, "idempotency_key": f"k{i}"}) for i in range(5)]
    lines.insert(2, json.dumps({**good, "phone": "garbage"}))
    lines.insert(4, "{not json")
    path = tmp_path / "jobs.jsonl"
    path.write_text("\n".join(lines) + "\n")
    code, output = zns(env, "enqueue", "--file", str(path))
    assert code == 1
    assert "nothing enqueued" in output
    assert queued(redis_url) == 0
    code, output = zns(env, "enqueue", "--file", str(path), "--skip-invalid")
    assert code == 1  # something was rejected: the exit code says so
    assert "enqueued 5, rejected 2" in output
    assert in_lane(redis_url, "bulk") == 5


def in_lane(redis_url: str, lane: str, account: str = "default") -> int:
    """Journey steps waiting in an account's lane."""
    client = redis.Redis.from_url(redis_url)
    try:
        return int(client.llen(Keys("zns").lane(account, lane)))
    finally:
        client.close()


def test_enqueue_lanes_file_bulk_by_default_single_realtime(
    env: dict[str, str], redis_url: str, tmp_path: Path
) -> None:
    job = {"phone": "0987654321", "template_id": "7", "template_data": {"a": 1}}
    path = tmp_path / "jobs.jsonl"
    path.write_text("\n".join(json.dumps({**job, "idempotency_key": f"k{i}"}) for i in range(3)))
    # A file is a bulk run: into the account's bulk lane, not the shared queue
    assert zns(env, "enqueue", "--file", str(path))[0] == 0
    assert (queued(redis_url), in_lane(redis_url, "bulk")) == (0, 3)
    status = json.loads(zns(env, "account", "status", "--json")[1])
    assert (status["waiting_realtime"], status["waiting_bulk"], status["in_flight"]) == (0, 3, 0)
    # unless told otherwise
    assert zns(env, "enqueue", "--file", str(path), "--lane", "realtime")[0] == 0
    assert queued(redis_url) == 3
    # A single job goes to the queue, as a bulk one if asked; a made-up lane is refused
    flags = ["--phone", "0987654321", "--template-id", "7", "--data", '{"a": 1}']
    assert zns(env, "enqueue", *flags, "--lane", "bulk")[0] == 0
    assert queued(redis_url) == 4
    code, output = zns(env, "enqueue", *flags, "--lane", "urgent")
    assert code == 2 and "--lane must be realtime or bulk" in output


def test_enqueue_missing_file(env: dict[str, str], tmp_path: Path) -> None:
    code, output = zns(env, "enqueue", "--file", str(tmp_path / "nope.jsonl"))
    assert code == 2
    assert "no such file" in output


def test_dead_letters_list_replay_and_purge(
    env: dict[str, str], runtime: Runtime, redis_url: str
) -> None:
    # Given a replayable dead letter and an invalid one
    job = {
        "phone": "84987654321",
        "template_id": "9",
        "template_data": {"a": 1},
        "idempotency_key": "dl-1",
        "account": "default",
    }
    replayable = runtime.dead_letters.add(
        reason="Zalo error -131",
        error_class="template",
        code=-131,
        kwargs=job,
        account="default",
        idempotency_key="dl-1",
    )
    invalid = runtime.dead_letters.add(
        reason="garbage", error_class="malformed_message", code=None, kwargs={"raw_body": "{x"}
    )
    # the job's claim, taken as the sender's `begin` does (once the quota is known), then its
    # dead letter recorded as the sender's `_dead_letter` does
    runtime.quota.set("default", 10, 10)
    step = StepKeys("default", "dl-1", "9", "unused-jt-key")
    assert runtime.sender._gate.begin(step, owner="t1", probe=False).state is Begin.OK
    runtime.idempotency.mark_dead("default", "dl-1", owner="t1", result={"status": "dead_lettered"})
    # When listed
    code, output = zns(env, "dead-letters", "list", "--json")
    assert code == 0
    listed = json.loads(output)
    assert [entry["id"] for entry in listed] == [replayable.id, invalid.id]
    assert listed[0]["kwargs"] == job and listed[0]["code"] == -131
    # When replayed: the valid one goes back on the queue, the invalid one stays
    code, output = zns(env, "dead-letters", "replay", "--all")
    assert code == 1
    assert "replayed 1, kept 1" in output and "still invalid" in output
    assert queued(redis_url) == 1
    assert runtime.idempotency.state("default", "dl-1") is None
    assert runtime.dead_letters.all_ids() == [invalid.id]
    # When purged
    code, output = zns(env, "dead-letters", "purge", "--all", "--yes")
    assert code == 0 and "purged 1" in output
    assert runtime.dead_letters.count() == 0


def test_replay_never_resends_a_job_that_was_sent(
    env: dict[str, str], runtime: Runtime, redis_url: str
) -> None:
    job = {
        "phone": "84987654321",
        "template_id": "9",
        "template_data": {"a": 1},
        "idempotency_key": "sent-1",
    }
    entry = runtime.dead_letters.add(
        reason="x",
        error_class="transient",
        code=-100,
        kwargs=job,
        account="default",
        idempotency_key="sent-1",
    )
    # the job was claimed and sent, as the sender's `begin` and `finish_sent` record it
    runtime.quota.set("default", 10, 10)
    gate, step = runtime.sender._gate, StepKeys("default", "sent-1", "9", "unused-jt-key")
    assert gate.begin(step, owner="t1", probe=False).state is Begin.OK
    sent = parse_job(job, default_key="sent-1")
    gate.finish_sent(step, sent, owner="t1", result={"status": "sent"}, quota=None)
    code, output = zns(env, "dead-letters", "replay", entry.id)
    assert code == 1 and "already sent" in output
    assert queued(redis_url) == 0


def test_dead_letters_ids_or_all(env: dict[str, str]) -> None:
    code, output = zns(env, "dead-letters", "replay")
    assert code == 2 and "--all" in output


def test_account_pause_status_resume_releases_parked(
    env: dict[str, str], runtime: Runtime, redis_url: str
) -> None:
    code, output = zns(env, "account", "pause", "default", "--reason", "balance")
    assert code == 0 and "paused" in output
    kwargs = {
        "phone": "84987654321",
        "template_id": "9",
        "template_data": {"a": 1},
        "idempotency_key": "p-1",
    }
    runtime.parking.park("default", reason=ParkReason.PAUSED, due_at=None, kwargs=kwargs, meta={})
    code, output = zns(env, "account", "status", "--json")
    status = json.loads(output)
    assert (
        status["paused"] is True and status["pause_reason"] == "balance" and status["parked"] == 1
    )
    code, output = zns(env, "account", "resume", "default")
    assert code == 0 and "resumed; released 1" in output
    assert runtime.accounts.status("default") is None
    assert runtime.parking.count("default") == 0
    assert queued(redis_url) == 1


def test_parked_list_and_release_by_reason(
    env: dict[str, str], runtime: Runtime, redis_url: str
) -> None:
    kwargs = {"phone": "84987654321", "template_id": "9", "template_data": {"a": 1}}
    far = 4_000_000_000.0
    runtime.parking.park(
        "default",
        reason=ParkReason.QUOTA,
        due_at=far,
        kwargs={**kwargs, "idempotency_key": "q"},
        meta={},
    )
    runtime.parking.park(
        "default",
        reason=ParkReason.NIGHT,
        due_at=far,
        kwargs={**kwargs, "idempotency_key": "n"},
        meta={},
    )
    code, output = zns(env, "parked", "list", "--json")
    assert code == 0
    assert sorted(job["reason"] for job in json.loads(output)) == ["night", "quota"]
    code, output = zns(env, "parked", "release", "--reason", "quota")
    assert code == 0 and "released 1" in output
    assert [job.reason for job in runtime.parking.entries("default")] == [ParkReason.NIGHT]
    assert queued(redis_url) == 1


def test_quota_probe_asks_the_sandbox(env: dict[str, str], control: SandboxControl) -> None:
    control.set_quota(500, remaining=123)
    code, output = zns(env, "quota", "--json")
    assert json.loads(output)["remaining"] is None
    code, output = zns(env, "quota", "--probe", "--json")
    assert code == 0
    assert json.loads(output) | {"updated_at_ms": 0} == {
        "account": "default",
        "remaining": 123,
        "daily": 500,
        "updated_at_ms": 0,
    }


def test_configuration_error_names_the_variable(env: dict[str, str]) -> None:
    code, output = zns({**env, "ZNS_REDIS_URL": "http://nope"}, "quota")
    assert code == 2
    assert "ZNS_REDIS_URL" in output


def test_token_status_set_and_refresh(
    env: dict[str, str], runtime: Runtime, control: SandboxControl
) -> None:
    # Given a fresh Redis: status shows no token yet (and never a token value)
    code, output = zns(env, "token", "status", "--json")
    assert code == 0 and json.loads(output)["access_token"] == "missing"
    # When an operator stores a pair from standard input
    result = runner.invoke(
        app, ["token", "set"], env=env, input="sandbox-access-token\nsandbox-refresh-token\n"
    )
    assert result.exit_code == 0, result.output
    status = json.loads(zns(env, "token", "status", "--json")[1])
    assert status["access_token"] == "present" and status["generation"] == 1
    assert "sandbox-access-token" not in json.dumps(status)
    # When refreshed on demand, against the sandbox's single-use refresh token
    code, output = zns(env, "token", "refresh")
    assert code == 0 and "generation 2" in output
    assert control.stats().refresh_successes == 1
    # And when a refresh is in doubt, a plain refresh refuses; --force goes ahead
    runtime.redis.hset(runtime.keys.oauth("default"), "in_doubt_since_ms", 1)
    code, output = zns(env, "token", "refresh")
    assert code == 1 and "without an answer" in output
    assert control.stats().refresh_attempts == 1
    code, output = zns(env, "token", "refresh", "--force")
    assert code == 0 and "generation 3" in output


def test_token_set_needs_both_tokens_and_never_reads_argv(env: dict[str, str]) -> None:
    result = runner.invoke(app, ["token", "set"], env=env, input="only-one\n")
    assert result.exit_code == 2
    assert "need both tokens" in result.output


def test_token_new_key_is_a_usable_fernet_key(env: dict[str, str]) -> None:
    code, output = zns(env, "token", "new-key")
    assert code == 0
    Fernet(output.strip().encode())


@pytest.mark.parametrize(
    "command", [["dead-letters", "list"], ["parked", "list"], ["account", "status"], ["quota"]]
)
def test_an_unreachable_redis_is_one_line_and_exit_3(
    command: list[str], env: dict[str, str], tmp_path: Path
) -> None:
    # Given a state Redis nobody listens on (with a password in its URL)
    bad = {**env, "ZNS_REDIS_URL": "redis://:s3cret@127.0.0.1:1/0", "ZNS_BROKER_URL": ""}
    # When an operator command runs as the console script does
    done = subprocess.run(
        [sys.executable, "-c", "from worker.ops.cli import main; main()", *command],
        env={**os.environ, **{k: v for k, v in bad.items() if v}},
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        check=False,
    )
    # Then one line says which service, where (no password) and why, with an exit code of its own
    assert done.returncode == EXIT_UNAVAILABLE, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "state Redis at redis://:**@127.0.0.1:1/0 cannot be reached" in lines[0]
    assert "s3cret" not in done.stderr + done.stdout and "Traceback" not in done.stderr


@pytest.mark.parametrize("command", ["sandbox", "demo", "bench"])
def test_a_developer_command_without_the_developer_tools_says_how_to_get_them(
    command: str, env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given an install without zns_dev (the image, a wheel from PyPI)
    monkeypatch.setitem(sys.modules, "zns_dev.commands", None)
    # When a developer command is asked for
    code, output = zns(env, command, "--help")
    # Then it says it is a developer tool and how to install it, with the usage exit code
    assert code == 2
    assert "developer tool" in output and "pip install -e ./devtools" in output


def test_a_developer_command_hands_its_arguments_over(env: dict[str, str]) -> None:
    # At 80 columns every option name is whole, and the test credentials are in the help
    code, output = zns({**env, "COLUMNS": "80"}, "sandbox", "--help")
    assert code == 0 and "…" not in output
    assert "--access-token-max-sends" in output and "--fault-drop-after-send" in output
    assert "ZNS_APP_ID=sandbox-app" in output


def test_the_dead_letter_table_shows_whole_ids_at_80_columns(
    env: dict[str, str], runtime: Runtime
) -> None:
    # Given a dead letter with a long reason
    entry = runtime.dead_letters.add(
        reason="Zalo error -131: " + "template parameter invalid " * 5,
        error_class="template",
        code=-131,
        kwargs={"a": 1},
        account="default",
    )
    # When listed on an 80-column terminal
    code, output = zns({**env, "COLUMNS": "80"}, "dead-letters", "list")
    # Then the id that `replay` takes is there whole
    assert code == 0 and entry.id in output


def test_worker_runs_celery_in_process_without_mingle_or_gossip(
    env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given `zns worker`, with Celery itself replaced by a recorder
    seen: list[list[str]] = []
    monkeypatch.setattr("worker.ops.cli._run_celery", seen.append)
    # When it starts
    code, output = zns(env, "worker", "-c", "4")
    # Then Celery runs our app on our queue, threads pool, without the 1 s mingle wait
    assert code == 0, output
    (args,) = seen
    assert args[:3] == ["-A", "tasks.app", "worker"]
    assert {"--without-mingle", "--without-gossip"} <= set(args)
    assert "--without-heartbeat" not in args  # the consumer's heartbeat feeds `zns check`
    assert args[args.index("-P") + 1] == "threads"
    assert args[args.index("-Q") + 1] == QUEUE
    assert args[args.index("-c") + 1] == "4"
