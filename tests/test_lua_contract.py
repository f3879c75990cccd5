"""The Python↔Lua contract, by name: each script's header names its KEYS and ARGV in order, the
script copies them into locals of those names at the top (and reads no KEYS/ARGV by position
after that), and its Python builder passes exactly that many, the step's identity first."""

from __future__ import annotations

import re
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any

import pytest

from worker.job import Job, parse_job
from worker.messaging.broker import inbox_sweep_args, pop_many_args
from worker.messaging.result_backend import store_result_args
from worker.state.idempotency import finish_args, release_args, reopen_args
from worker.state.keys import Keys
from worker.state.lanes import ReleaseLimits, lane_release_args
from worker.state.locks import unlock_args
from worker.state.ordering import order_wait_args
from worker.state.parking import ParkedJob, park_claim_due_args
from worker.state.quota import quota_observe_args, quota_rebase_args, quota_release_args
from worker.state.ratelimit import RateParams, rate_slot_args
from worker.state.step_gate import StepKeys, begin_step_args, finish_sent_args
from worker.state.step_status import (
    status_dead_args,
    status_delivered_args,
    status_enqueued_args,
    status_parked_args,
    status_reopen_args,
    step_identity,
)
from worker.status import ParkReason
from worker.tokens.access import max_field_args
from worker.tokens.journey import journey_token_drop_args, journey_token_store_args
from worker.zalo.models import Quota

IDENTITY = ["idem_key", "step", "tracking_id", "journey", "phone", "template_id"]
KEYS = Keys("zns")
JOB = parse_job(
    {"phone": "84987654321", "template_id": "500", "template_data": {"a": 1}, "step": 2},
    default_key="k1",
)
STEP = StepKeys(JOB.account, JOB.idempotency_key, JOB.template_id, "zns:jt")
PARKED = ParkedJob("p1", JOB.account, ParkReason.ORDER, -1.0, 0.0, {}, {})

Builder = Callable[[], tuple[list[Any], list[Any]]]

#: Every script, and its builder called with sample values.
BUILDERS: dict[str, Builder] = {
    "state/begin_step": lambda: begin_step_args(
        KEYS,
        STEP,
        owner="o",
        claim_ttl_ms=1,
        floor=0,
        probe=False,
        rate=RateParams(1, 0),
        max_wait_ms=0,
        defer=False,
    ),
    "state/finish_sent": lambda: finish_sent_args(
        KEYS, STEP, JOB, now=1.0, retention_ms=1, owner="o", result={}, quota=Quota()
    ),
    "state/order_wait": lambda: order_wait_args(
        KEYS, JOB, PARKED, now_ms=1, retention_ms=1, max_wait_ms=1
    ),
    "state/status_enqueued": lambda: status_enqueued_args(
        KEYS, [("t1", JOB), ("t2", JOB)], now_ms=1, retention_ms=1
    ),
    "state/status_parked": lambda: status_parked_args(
        KEYS, JOB, now_ms=1, retention_ms=1, reason="night", due_ms=None
    ),
    "state/status_dead": lambda: status_dead_args(
        KEYS, JOB, now_ms=1, retention_ms=1, reason="r", code=None
    ),
    "state/status_delivered": lambda: status_delivered_args(
        KEYS, "a", "m", delivered_at_ms=1, tracking_id=None, now_ms=1, retention_ms=1
    ),
    "state/status_reopen": lambda: status_reopen_args(KEYS, "a", "k"),
    "state/finish": lambda: finish_args(
        KEYS, "a", "k", owner="o", final="dead", result={}, retention_ms=1
    ),
    "state/release": lambda: release_args(KEYS, "a", "k", owner="o"),
    "state/reopen": lambda: reopen_args(KEYS, "a", "k"),
    "state/quota_observe": lambda: quota_observe_args(
        KEYS, "a", reported=1, daily=None, mode="sent", now=1.0
    ),
    "state/quota_release": lambda: quota_release_args(KEYS, "a", give_back=True),
    "state/quota_rebase": lambda: quota_rebase_args(
        KEYS, "a", prev_daily=None, new_daily=1, now=1.0
    ),
    "state/rate_slot": lambda: rate_slot_args(KEYS, "a", RateParams(1, 0), max_wait_ms=0),
    "state/lane_release": lambda: lane_release_args(
        KEYS, "a", ReleaseLimits(RateParams(1, 0), 1, 1, 1), lease_ms=1, grace_ms=1
    ),
    "state/park_claim_due": lambda: park_claim_due_args(KEYS, "a", now_ms=1, lease_ms=1, limit=1),
    "state/unlock": lambda: unlock_args("lock", "holder"),
    "tokens/journey_token_drop": lambda: journey_token_drop_args("jt", "j"),
    "tokens/journey_token_store": lambda: journey_token_store_args(
        "jt", "lock", token="t", journey_id="j", created_at_ms=1, expires_at_ms=2, holder="h"
    ),
    "tokens/max_field": lambda: max_field_args("h", "f", 1),
    "messaging/broker_pop_many": lambda: pop_many_args(
        "i", "b", "r", ["q1.in"], ["q1", "q2"], want=1, now=1.0
    ),
    "messaging/broker_inbox_sweep": lambda: inbox_sweep_args("r", "i", "q", stale_before=1.0),
    "messaging/store_result": lambda: store_result_args("r", meta_json="{}", expires_s=0),
}
#: The step's identity as the first six ARGV.
WITH_IDENTITY = {
    "state/finish_sent",
    "state/order_wait",
    "state/status_parked",
    "state/status_dead",
}
#: KEYS and ARGV that repeat (per step, per queue): the builder's lengths follow these.
REPEATED = {"state/status_enqueued": (4, 7), "messaging/broker_pop_many": (1, 0)}

HEADER = re.compile(r"^-- (KEYS|ARGV)\[([^\]]+)\]\s+([\w, ]+?)(?::|\s{2,}|$)")
LOCALS = re.compile(r"^\s*local ([\w, ]+?) = (.+)$")
ITEM = re.compile(r"^(?:tonumber\()?(KEYS|ARGV)\[(\d+)\]\)?$")
POSITIONAL = re.compile(r"\b(KEYS|ARGV)\[")


def _scripts() -> list[str]:
    root = Path(str(resources.files("worker")))
    names = [f"{p.parent.parent.name}/{p.stem}" for p in root.glob("*/lua/*.lua")]
    return sorted(names)


def _text(name: str) -> str:
    package, stem = name.split("/")
    return resources.files(f"worker.{package}").joinpath("lua", f"{stem}.lua").read_text()


def _header(text: str) -> dict[str, dict[str, list[str]]]:
    """{'KEYS'|'ARGV': {index or range: names}} from the comment lines."""
    out: dict[str, dict[str, list[str]]] = {"KEYS": {}, "ARGV": {}}
    for line in text.splitlines():
        match = HEADER.match(line)
        if match:
            kind, where, names = match.groups()
            out[kind][where] = [n.strip() for n in names.split(",") if n.strip()]
    return out


def _copied(text: str) -> tuple[dict[str, dict[int, str]], list[str]]:
    """The locals copied from KEYS[n] / ARGV[n], and the code lines that read them otherwise."""
    copied: dict[str, dict[int, str]] = {"KEYS": {}, "ARGV": {}}
    others = []
    for line in text.splitlines():
        if line.startswith("--"):
            continue
        match = LOCALS.match(line)
        if match:
            names = [n.strip() for n in match.group(1).split(",")]
            items = [ITEM.match(part.strip()) for part in match.group(2).split(",")]
            if len(items) == len(names) and all(items):
                for name, item in zip(names, items, strict=True):
                    assert item is not None
                    copied[item.group(1)][int(item.group(2))] = name
                continue
        if POSITIONAL.search(line):
            others.append(line.strip())
    return copied, others


def _fixed(header: dict[str, list[str]]) -> dict[int, str]:
    """Header entries at fixed positions: `[3]` and `[1..6]`."""
    out: dict[int, str] = {}
    for where, names in header.items():
        if where.isdigit():
            assert len(names) == 1, where
            out[int(where)] = names[0]
        elif re.fullmatch(r"\d+\.\.\d+", where):
            first, last = (int(n) for n in where.split(".."))
            assert len(names) == last - first + 1, where
            out.update({first + i: name for i, name in enumerate(names)})
    return out


def test_every_script_has_a_builder() -> None:
    assert _scripts() == sorted(BUILDERS)


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_the_header_names_the_locals_the_script_copies(name: str) -> None:
    text = _text(name)
    header = _header(text)
    copied, others = _copied(text)
    for kind in ("KEYS", "ARGV"):
        assert _fixed(header[kind]) == copied[kind], kind
    if name not in REPEATED:
        assert others == [], "KEYS/ARGV read by position after the named locals"


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_the_builder_passes_what_the_header_lists(name: str) -> None:
    keys, args = BUILDERS[name]()
    header = _header(_text(name))
    fixed_keys, fixed_args = _fixed(header["KEYS"]), _fixed(header["ARGV"])
    per_key, per_arg = REPEATED.get(name, (0, 0))
    if name == "state/status_enqueued":
        steps = len(keys) // per_key
        assert len(keys) == per_key * steps
        assert len(args) == len(fixed_args) + per_arg * steps
    elif name == "messaging/broker_pop_many":
        assert len(keys) > len(fixed_keys)
        assert len(args) == len(fixed_args)
    else:
        assert len(keys) == len(fixed_keys)
        assert len(args) == len(fixed_args)


@pytest.mark.parametrize("name", sorted(WITH_IDENTITY))
def test_the_step_identity_comes_first_in_the_same_order(name: str) -> None:
    assert [_fixed(_header(_text(name))["ARGV"])[i] for i in range(1, 7)] == IDENTITY
    _, args = BUILDERS[name]()
    assert args[:6] == step_identity(JOB)


def test_status_enqueued_takes_each_step_identity_first() -> None:
    header = _header(_text("state/status_enqueued"))
    assert header["ARGV"]["7i+3..7i+9"] == [*IDENTITY, "task_id"]
    _, args = BUILDERS["state/status_enqueued"]()
    assert args[2:9] == [*step_identity(JOB), "t1"]


def test_identify_takes_the_identity_as_parameters() -> None:
    lib = resources.files("worker.state").joinpath("lua", "lib", "status.lua").read_text()
    match = re.search(r"local function identify\(([^)]*)\)", lib)
    assert match is not None
    assert [p.strip() for p in match.group(1).split(",")] == ["st", *IDENTITY, "..."]
    code = [line for line in lib.splitlines() if not line.lstrip().startswith("--")]
    assert not any(POSITIONAL.search(line) for line in code)


def _job(**extra: Any) -> Job:
    raw = {"phone": "84987654321", "template_id": "500", "template_data": {"a": 1}, **extra}
    return parse_job(raw, default_key="k")


def test_a_step_without_a_number_is_identified_with_an_empty_step() -> None:
    assert step_identity(_job())[1] == ""
    assert step_identity(_job(step=3))[1] == 3
