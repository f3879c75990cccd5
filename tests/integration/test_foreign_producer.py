"""A producer in another codebase: only `celery[redis]` installed, nothing of ours importable."""

from __future__ import annotations

import subprocess
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.side_venv import side_venv
from tests.support import WorkerProcess, wait_until
from worker.settings import Settings
from zns_dev.sandbox.control import SandboxControl

PRODUCER = textwrap.dedent(
    """
    import importlib.util, json, sys
    from celery import Celery
    assert importlib.util.find_spec("worker") is None, "our package must not be importable here"
    app = Celery(broker=sys.argv[1], backend=sys.argv[1])
    result = app.send_task(
        "zns.send_journey_step",
        kwargs={
            "phone": "0987 654 321",
            "template_id": 248791,
            "template_data": {"customer_name": "Nguyen Van A", "amount": 150000},
            "journey": "ORDER-42",
        },
        queue="zns",
    )
    print(json.dumps(result.get(timeout=60)))
    """
)


@pytest.fixture(scope="session")
def celery_only_python() -> Path:
    """A virtualenv holding only celery[redis] (what an app team has)."""
    return side_venv("celery-only", "celery[redis]>=5.4") / "python"


def test_producer_with_only_celery_enqueues_by_name_and_the_step_is_sent(
    celery_only_python: Path,
    settings: Settings,
    start_worker: Callable[..., WorkerProcess],
    control: SandboxControl,
    tmp_path: Path,
) -> None:
    start_worker(concurrency=4)
    script = tmp_path / "producer.py"
    script.write_text(PRODUCER)
    done = subprocess.run(
        [str(celery_only_python), str(script), settings.redis_url],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert '"status": "sent"' in done.stdout
    wait_until(lambda: control.stats().sends_accepted == 1, timeout_s=10)
    (message,) = control.messages()
    assert message.phone == "84987654321"
    assert message.template_id == "248791"
