"""deploy/: every manifest validates against the Kubernetes schemas (offline), kustomize builds."""

from __future__ import annotations

import copy
import shutil
import subprocess
from pathlib import Path

import jsonschema
import kubernetes_validate  # type: ignore[import-untyped]  # ships the Kubernetes JSON schemas
import pytest
import yaml

from tests.deploy.keda_schema import SCHEMAS
from tests.deploy.manifests import (
    BASE,
    DEPLOY,
    KUSTOMIZATION,
    OVERLAY,
    SECRET_EXAMPLE,
    Doc,
    Kustomization,
    find,
    key,
    kustomization_dirs,
    load_docs,
    manifest_files,
    render,
)
from tests.monitoring.prometheusrule_schema import PROMETHEUS_RULE

#: The oldest Kubernetes we support (policy/v1 PDBs, seccompProfile fields) and the newest known.
K8S_VERSIONS = ("1.28.0", kubernetes_validate.latest_version())


def validate(doc: Doc, version: str) -> None:
    """Kubernetes schema (strict: unknown fields fail) or, for KEDA and the Prometheus operator,
    our CRD schemas."""
    if doc["apiVersion"].startswith("keda.sh/"):
        jsonschema.validate(doc, SCHEMAS[doc["kind"]])
        return
    if doc["apiVersion"].startswith("monitoring.coreos.com/"):
        jsonschema.validate(doc, PROMETHEUS_RULE)
        return
    kubernetes_validate.validate(doc, version, strict=True)


def _label(path: Path) -> str:
    return str(path.relative_to(DEPLOY))


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize("path", manifest_files(), ids=_label)
def test_every_manifest_file_validates(path: Path, version: str) -> None:
    docs = load_docs(path)
    assert docs, f"{path} holds no document"
    for doc in docs:
        validate(doc, version)


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize("directory", kustomization_dirs(), ids=_label)
def test_every_built_kustomization_validates(directory: Path, version: str) -> None:
    docs = render(directory)
    assert len({key(d) for d in docs}) == len(docs), "two resources with one kind and name"
    for doc in docs:
        validate(doc, version)


def test_kustomizations_name_existing_files_and_every_file_is_used() -> None:
    used: set[Path] = set()
    for directory in kustomization_dirs():
        kustomization = Kustomization.load(directory)
        for path in [*kustomization.resource_paths(), *kustomization.patch_paths()]:
            assert path.exists(), f"{directory / KUSTOMIZATION} names a missing {path}"
            if path.is_dir():
                assert (path / KUSTOMIZATION).exists(), f"{path} is no kustomization"
            else:
                assert load_docs(path), f"{path} is empty"
                used.add(path)
    every = {p.resolve() for p in DEPLOY.rglob("*.yaml") if p.name != KUSTOMIZATION}
    # Deliberately outside any kustomization: applying placeholders would overwrite real Secrets.
    assert every - used == {SECRET_EXAMPLE.resolve()}


def test_the_overlay_builds_on_the_base() -> None:
    base = {key(d)[0::2] for d in render(BASE)}
    overlay = render(OVERLAY)
    assert base <= {key(d)[0::2] for d in overlay}
    assert find(overlay, "Namespace", "zns")
    assert {d["metadata"].get("namespace") for d in overlay if d["kind"] != "Namespace"} == {"zns"}


def _kustomize_binary() -> list[str] | None:
    if shutil.which("kustomize"):
        return ["kustomize", "build"]
    if shutil.which("kubectl"):
        return ["kubectl", "kustomize"]
    return None


@pytest.mark.parametrize("directory", kustomization_dirs(), ids=_label)
def test_real_kustomize_builds_what_the_test_renderer_builds(directory: Path) -> None:
    command = _kustomize_binary()
    if command is None:
        pytest.skip("no kustomize or kubectl binary here: the renderer checks stand alone")
    built = subprocess.run(
        [*command, str(directory)], capture_output=True, text=True, timeout=60, check=False
    )
    assert built.returncode == 0, built.stderr
    theirs = {key(d): d for d in yaml.safe_load_all(built.stdout) if d}
    ours = {key(d): d for d in render(directory)}
    assert theirs == ours


# -- the KEDA schema itself must catch mistakes ---------------------------------------------------


def _scaled_object() -> Doc:
    return copy.deepcopy(find(render(BASE), "ScaledObject", "zns-worker"))


@pytest.mark.parametrize(
    "breakage",
    [
        lambda d: d["spec"].pop("scaleTargetRef"),
        lambda d: d["spec"]["triggers"][0]["metadata"].update(listLength=500),  # unquoted
        lambda d: d["spec"].update(minReplicaCount="2"),
        lambda d: d["spec"].update(minReplicas=2),  # a typo of minReplicaCount
    ],
    ids=["no target", "number in metadata", "string count", "unknown field"],
)
def test_keda_schema_refuses_broken_scaled_objects(breakage: object) -> None:
    doc = _scaled_object()
    assert callable(breakage)
    breakage(doc)
    with pytest.raises(jsonschema.ValidationError):
        validate(doc, K8S_VERSIONS[0])


def test_kubernetes_schema_refuses_unknown_fields() -> None:
    deployment = copy.deepcopy(find(render(BASE), "Deployment", "zns-worker"))
    deployment["spec"]["template"]["spec"]["containers"][0]["securityContxt"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        validate(deployment, K8S_VERSIONS[0])
