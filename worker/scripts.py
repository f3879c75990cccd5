"""Lua scripts shipped beside the code (`worker/lua/*.lua`), registered once per Redis client."""

from __future__ import annotations

from functools import cache
from importlib import resources
from typing import Any

import redis

Script = Any  # redis.commands.core.Script: called as script(keys=[...], args=[...])


@cache
def script_source(name: str) -> str:
    """The text of `worker/lua/<name>.lua`."""
    return resources.files("worker").joinpath("lua", f"{name}.lua").read_text(encoding="utf-8")


def register(client: redis.Redis, name: str) -> Script:
    """Register a script with a client; redis-py runs it by SHA and reloads it if Redis forgot."""
    return client.register_script(script_source(name))
