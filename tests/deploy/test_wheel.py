"""The product as shipped: the wheel (and so the image) holds what runs in a pod and nothing of
the developer tools."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SOURCES = ("pyproject.toml", "README.md", "worker", "tasks")  # the Dockerfile's COPY lines
DEV_ONLY = ("zns_dev/", "sandbox", "bench", "demo", "localrun", "naive")
DEV_DEPENDENCIES = ("aiohttp", "uvloop")
PIP_WHEEL = (sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> zipfile.ZipFile:
    """The wheel `pip wheel .` builds from what the Dockerfile's build stage copies."""
    source = tmp_path_factory.mktemp("source")
    for name in SOURCES:
        copy = shutil.copytree if (REPO / name).is_dir() else shutil.copy
        copy(REPO / name, source / name)
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [*PIP_WHEEL, "--wheel-dir", str(out), str(source)],
        check=True,
        timeout=300,
    )
    (built,) = out.glob("zns_journey_worker-*.whl")
    return zipfile.ZipFile(built)


def test_the_wheel_holds_no_developer_tool(wheel: zipfile.ZipFile) -> None:
    names = wheel.namelist()
    assert any(n.startswith("worker/state/lua/") for n in names), "the Lua scripts ship"
    assert "worker/zalo/error-codes.csv" in names
    shipped = [n for n in names if not n.endswith(".dist-info/RECORD")]
    for name in shipped:
        assert not any(part in name for part in DEV_ONLY), name


def test_the_wheel_needs_no_developer_dependency(wheel: zipfile.ZipFile) -> None:
    (metadata,) = [n for n in wheel.namelist() if n.endswith(".dist-info/METADATA")]
    requires = [
        line.split(":", 1)[1].strip().lower()
        for line in wheel.read(metadata).decode().splitlines()
        if line.startswith("Requires-Dist:") and "extra ==" not in line
    ]
    assert requires, "the runtime dependencies are declared"
    for dependency in requires:
        assert not dependency.startswith(DEV_DEPENDENCIES), dependency


def test_the_image_installs_only_the_products_wheel() -> None:
    dockerfile = (REPO / "Dockerfile").read_text(encoding="utf-8")
    final = dockerfile.rsplit("\nFROM ", 1)[1]
    assert "zns_journey_worker-*.whl" in final
    assert "devtools" not in final
