"""Lua scripts shipped beside the code that builds their KEYS and ARGV (`lua/*.lua` in the
package of that code: `worker/state/lua/`, `worker/tokens/lua/`, `worker/messaging/lua/`),
registered once per Redis client.

A script may start with `-- uses: a, b`: the functions of `worker/state/lua/lib/a.lua` and
`b.lua` are put in front of it, so each piece of logic (claim, gates, quota, finish, rate limit)
is written once and the hot-path scripts combine several of them into one round trip.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from importlib import resources
from typing import Any

import redis
from redis.exceptions import NoScriptError

Script = Any  # redis.commands.core.Script: called as script(keys=[...], args=[...])
USES = "-- uses:"


#: The package whose `lua/` holds a script unless its caller names another; the library too.
STATE = "worker.state"


@cache
def script_source(name: str, package: str = STATE) -> str:
    """The text of `<package>/lua/<name>.lua`, with the library functions it uses in front."""
    text = _read(package, "lua", f"{name}.lua")
    first = text.splitlines()[0] if text else ""
    if not first.startswith(USES):
        return text
    libs = [part.strip() for part in first.removeprefix(USES).split(",") if part.strip()]
    return "\n".join([*(_read(STATE, "lua", "lib", f"{lib}.lua") for lib in libs), text])


def register(client: redis.Redis, name: str, *, package: str = STATE) -> Script:
    """Register a script with a client; redis-py runs it by SHA and reloads it if Redis forgot."""
    return client.register_script(script_source(name, package))


ScriptCall = tuple[Script, Sequence[Any], Sequence[Any]]
"""(script, keys, args)."""


def run_pipelined(client: redis.Redis, calls: Sequence[ScriptCall]) -> list[Any]:
    """Several script calls in one round trip; returns their replies, raises the first error.

    By SHA only: redis-py's pipeline first asks SCRIPT EXISTS for its scripts, a second round
    trip every time. A call Redis answers NOSCRIPT (restarted or flushed) is sent again, alone,
    after its script is loaded; the others ran once."""
    replies = _evalsha_all(client, calls)
    missing = [i for i, reply in enumerate(replies) if isinstance(reply, NoScriptError)]
    if missing:
        for index in missing:
            script = calls[index][0]
            script.sha = client.script_load(script.script)
        again = _evalsha_all(client, [calls[i] for i in missing])
        for index, reply in zip(missing, again, strict=True):
            replies[index] = reply
    for reply in replies:
        if isinstance(reply, Exception):
            raise reply
    return replies


def _evalsha_all(client: redis.Redis, calls: Sequence[ScriptCall]) -> list[Any]:
    with client.pipeline(transaction=False) as pipe:
        for script, keys, args in calls:
            pipe.evalsha(script.sha, len(keys), *keys, *args)
        return list(pipe.execute(raise_on_error=False))


def _read(package: str, *parts: str) -> str:
    return resources.files(package).joinpath(*parts).read_text(encoding="utf-8")
