"""One real sandbox subprocess on a free loopback port for the module; reset before each test."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.sandbox.zalo import ZaloCalls
from zns_dev.sandbox import SandboxConfig, SandboxControl, running_sandbox


@pytest.fixture(scope="session")
def sandbox_url() -> Iterator[str]:
    with running_sandbox(SandboxConfig(port=0, seed=7)) as url:
        yield url


@pytest.fixture
def control(sandbox_url: str) -> Iterator[SandboxControl]:
    with SandboxControl(sandbox_url) as control:
        control.reset()
        yield control


@pytest.fixture
def zalo(sandbox_url: str, control: SandboxControl) -> Iterator[ZaloCalls]:
    # `control` first: every test starts from a freshly reset sandbox.
    with httpx.Client(base_url=sandbox_url, timeout=10.0) as http:
        yield ZaloCalls(http)
