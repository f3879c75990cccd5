"""Reading deploy/: YAML documents, a small kustomize renderer, the `zns` command tree.

The renderer implements exactly the kustomize features our kustomizations use (resources,
namespace, labels, images, patches by kind and name) and refuses any other field, so it cannot
silently diverge; where a kustomize binary exists, a test compares the two outputs.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import typer
import typer.core
import typer.main
import yaml

from tests.support import REPO

DEPLOY = REPO / "deploy"
BASE = DEPLOY / "base"
OVERLAY = DEPLOY / "overlays" / "example"
SECRET_EXAMPLE = OVERLAY / "secret.example.yaml"
KUSTOMIZATION = "kustomization.yaml"
SUPPORTED_FIELDS = frozenset(
    {"apiVersion", "kind", "resources", "namespace", "labels", "images", "patches"}
)
#: Kinds that exist once per cluster: kustomize gives them no namespace.
CLUSTER_SCOPED = frozenset({"Namespace", "ClusterRole", "ClusterRoleBinding"})
WORKLOAD_KINDS = frozenset({"Deployment", "StatefulSet", "DaemonSet", "Job"})

Doc = dict[str, Any]


def load_docs(path: Path) -> list[Doc]:
    """Every non-empty YAML document of a file (each must be a mapping)."""
    docs = [doc for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")) if doc is not None]
    for doc in docs:
        assert isinstance(doc, dict), f"{path}: a document is not a mapping"
    return docs


def key(doc: Doc) -> tuple[str, str, str]:
    """(kind, namespace, name): how kustomize tells resources apart."""
    meta = doc.get("metadata", {})
    return doc["kind"], meta.get("namespace", ""), meta["name"]


@dataclass(frozen=True)
class Kustomization:
    """One kustomization.yaml, read and checked for fields the renderer does not implement."""

    directory: Path
    spec: Doc

    @classmethod
    def load(cls, directory: Path) -> Kustomization:
        """Read `directory/kustomization.yaml`."""
        [spec] = load_docs(directory / KUSTOMIZATION)
        unknown = set(spec) - SUPPORTED_FIELDS
        assert not unknown, f"{directory}: kustomize fields the test renderer lacks: {unknown}"
        return cls(directory, spec)

    def resource_paths(self) -> list[Path]:
        """Each entry of `resources`, resolved (a file or a kustomization directory)."""
        return [(self.directory / entry).resolve() for entry in self.spec.get("resources", [])]

    def patch_paths(self) -> list[Path]:
        """Each `patches[].path`, resolved."""
        return [
            (self.directory / patch["path"]).resolve() for patch in self.spec.get("patches", [])
        ]


def render(directory: Path) -> list[Doc]:
    """What `kustomize build directory` prints, as documents."""
    kustomization = Kustomization.load(directory)
    docs: list[Doc] = []
    for path in kustomization.resource_paths():
        docs += render(path) if path.is_dir() else load_docs(path)
    docs = [copy.deepcopy(doc) for doc in docs]
    spec = kustomization.spec
    for patch_path in kustomization.patch_paths():
        _apply_patches(docs, load_docs(patch_path), patch_path)
    for label in spec.get("labels", []):
        assert not label.get("includeSelectors") and not label.get("includeTemplates")
        for doc in docs:
            doc.setdefault("metadata", {}).setdefault("labels", {}).update(label["pairs"])
    if "namespace" in spec:
        for doc in docs:
            if doc["kind"] not in CLUSTER_SCOPED:
                doc["metadata"]["namespace"] = spec["namespace"]
    for image in spec.get("images", []):
        for container in all_containers(docs):
            _retag(container, image)
    return docs


def _apply_patches(docs: list[Doc], patches: list[Doc], path: Path) -> None:
    for patch in patches:
        targets = [
            d
            for d in docs
            if d["kind"] == patch["kind"] and d["metadata"]["name"] == patch["metadata"]["name"]
        ]
        assert len(targets) == 1, f"{path}: patch {patch['kind']}/{patch['metadata']['name']}"
        _merge(targets[0], patch)


def _merge(target: Doc, patch: Doc) -> None:
    """Merge maps recursively; lists and scalars replace (JSON merge patch semantics)."""
    for name, value in patch.items():
        if isinstance(value, dict) and isinstance(target.get(name), dict):
            _merge(target[name], value)
        else:
            target[name] = copy.deepcopy(value)


def split_image(image: str) -> tuple[str, str | None]:
    """`registry:5000/app:1.2` -> (`registry:5000/app`, `1.2`); no tag -> None."""
    head, slash, last = image.rpartition("/")
    name, colon, tag = last.partition("@")[0].partition(":")
    return f"{head}{slash}{name}", tag if colon else None


def _retag(container: Doc, image: Doc) -> None:
    name, tag = split_image(container["image"])
    if name != image["name"]:
        return
    container["image"] = f"{image.get('newName', name)}:{image.get('newTag', tag)}"


def pod_spec(doc: Doc) -> Doc:
    """The pod spec of a workload."""
    spec: Doc = doc["spec"]["template"]["spec"]
    return spec


def all_containers(docs: list[Doc]) -> Iterator[Doc]:
    """Every container and init container of every workload."""
    for doc in docs:
        if doc["kind"] in WORKLOAD_KINDS:
            spec = pod_spec(doc)
            yield from spec.get("initContainers", [])
            yield from spec["containers"]


def find(docs: list[Doc], kind: str, name: str) -> Doc:
    """The one document of this kind and name."""
    found = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind}/{name}, found {len(found)}"
    return found[0]


def manifest_files() -> list[Path]:
    """Every YAML file under deploy/ that is a resource (not a kustomization or a patch)."""
    patches = {p for d in kustomization_dirs() for p in Kustomization.load(d).patch_paths()}
    files = sorted(DEPLOY.rglob("*.yaml"))
    return [f for f in files if f.name != KUSTOMIZATION and f.resolve() not in patches]


def kustomization_dirs() -> list[Path]:
    """Every directory under deploy/ holding a kustomization.yaml."""
    return sorted(p.parent for p in DEPLOY.rglob(KUSTOMIZATION))


# -- the zns command line ----------------------------------------------------------------------


def zns_group() -> typer.core.TyperGroup:
    """The command group behind the `zns` console script."""
    from worker.ops.cli import app  # noqa: PLC0415 (imports Celery)

    group = typer.main.get_command(app)
    assert isinstance(group, typer.core.TyperGroup)
    return group


def assert_zns_command(argv: list[str], where: str) -> None:
    """`zns argv…` names a real subcommand and its options parse (nothing is run)."""
    assert argv, f"{where}: empty command"
    group = zns_group()
    command = group.commands.get(argv[0])
    assert command is not None, f"{where}: `zns {argv[0]}` is not a zns command"
    try:
        command.make_context(f"zns {argv[0]}", list(argv[1:]))
    except typer.TyperException as exc:  # usage errors: unknown option, bad value, missing arg
        raise AssertionError(f"{where}: `zns {' '.join(argv)}` does not parse: {exc}") from None


_DEFAULTED = re.compile(r"\$\{(\w+):-([^}]*)\}")


def expand_defaults(command: str) -> str:
    """`${PORT:-5555}` -> `5555`: the shell's default, as a Procfile runner would expand it."""
    return _DEFAULTED.sub(lambda m: m.group(2), command)
