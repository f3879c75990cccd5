"""Lua scripts shipped beside the code (`worker/lua/*.lua`), registered once per Redis client.

A script may start with `-- uses: a, b`: the functions of `worker/lua/lib/a.lua` and `b.lua` are
put in front of it, so each piece of logic (claim, gates, quota, finish, rate limit) is written
once and the hot-path scripts combine several of them into one round trip.
"""

from __future__ import annotations

from functools import cache
from importlib import resources
from typing import Any

import redis

Script = Any  # redis.commands.core.Script: called as script(keys=[...], args=[...])
USES = "-- uses:"


@cache
def script_source(name: str) -> str:
    """The text of `worker/lua/<name>.lua`, with the library functions it uses in front."""
    text = _read("lua", f"{name}.lua")
    first = text.splitlines()[0] if text else ""
    if not first.startswith(USES):
        return text
    libs = [part.strip() for part in first.removeprefix(USES).split(",") if part.strip()]
    return "\n".join([*(_read("lua", "lib", f"{lib}.lua") for lib in libs), text])


def register(client: redis.Redis, name: str) -> Script:
    """Register a script with a client; redis-py runs it by SHA and reloads it if Redis forgot."""
    return client.register_script(script_source(name))


def _read(*parts: str) -> str:
    return resources.files("worker").joinpath(*parts).read_text(encoding="utf-8")
