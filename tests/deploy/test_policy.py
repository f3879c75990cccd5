"""Security and operations policy over the built manifests: an offline scan of our own rules.

Each rule says why in its name. They run on the example overlay as `kubectl apply -k` would see it
and on the base, so an overlay cannot quietly weaken what the base promises.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any, cast

import pytest
from pydantic import BaseModel
from starlette.routing import Route

from tests.deploy.manifests import (
    BASE,
    OVERLAY,
    SECRET_EXAMPLE,
    WORKLOAD_KINDS,
    Doc,
    all_containers,
    assert_zns_command,
    find,
    load_docs,
    pod_spec,
    render,
    split_image,
)
from worker.messaging.names import QUEUE
from worker.settings import NESTED_DELIMITER, CelerySettings, Settings, WebhookSettings
from worker.webhooks.app import HEALTH_PATH, create_app
from worker.webhooks.receiver import WebhookReceiver

CELERY = CelerySettings()
WEBHOOKS = WebhookSettings()
#: Every workload the base ships, by name, and the `zns` subcommand its container runs.
COMPONENTS = {"zns-worker": "worker", "zns-flower": "flower", "zns-webhooks": "webhooks"}
#: The workloads that run more than one pod: a drain must never take them all at once.
WITH_DISRUPTION_BUDGET = ("zns-worker", "zns-webhooks")
#: The workloads a Service routes traffic to (ClusterIP; the ingress is the user's).
SERVED = ("zns-flower", "zns-webhooks")
#: What only the worker needs: the Zalo app's credentials and the tokens' encryption keys.
ZALO_CREDENTIALS = frozenset(
    {"ZNS_SECRET_KEY", "ZNS_ACCESS_TOKEN", "ZNS_REFRESH_TOKEN", "ZNS_TOKEN_ENCRYPTION_KEYS"}
)
#: Variable names that hold credentials: never a literal value, never in a ConfigMap.
SECRET_NAME = re.compile(
    r"(SECRET|PASSWORD|PASSWD|CREDENTIAL|PRIVATE|BASIC_AUTH|(ACCESS|REFRESH|API)_TOKEN"
    r"|ENCRYPTION_KEY|_KEY$)",
    re.I,
)
#: Values that look like credentials: a URL with a password, long random-looking strings.
URL_WITH_PASSWORD = re.compile(r"://[^/\s:@]*:[^/\s@]+@")
LONG_OPAQUE = re.compile(r"^[A-Za-z0-9+/_=.-]{32,}$")
PLACEHOLDER = "REPLACE_ME"
MIN_UID = 10_000  # above any uid a node's own accounts use


@pytest.fixture(scope="module", params=["overlay", "base"])
def docs(request: pytest.FixtureRequest) -> list[Doc]:
    """The built manifests of the example overlay and of the base."""
    return render(OVERLAY if request.param == "overlay" else BASE)


def workloads(docs: list[Doc]) -> Iterator[Doc]:
    """Every Deployment (and other pod-owning kind)."""
    return (d for d in docs if d["kind"] in WORKLOAD_KINDS)


def _name(doc: Doc) -> str:
    return f"{doc['kind']}/{doc['metadata']['name']}"


def _container_security(spec: Doc, container: Doc) -> dict[str, Any]:
    """The effective security context: the container's fields over the pod's."""
    pod = spec.get("securityContext", {})
    effective: dict[str, Any] = {k: pod[k] for k in ("runAsNonRoot", "runAsUser", "seccompProfile")}
    effective.update(container.get("securityContext", {}))
    return effective


# -- pods and containers -------------------------------------------------------------------------


def test_every_container_runs_as_a_high_non_root_uid(docs: list[Doc]) -> None:
    for doc in workloads(docs):
        spec = pod_spec(doc)
        for container in spec["containers"]:
            sc = _container_security(spec, container)
            assert sc.get("runAsNonRoot") is True, _name(doc)
            assert isinstance(sc.get("runAsUser"), int), _name(doc)
            assert sc["runAsUser"] >= MIN_UID, _name(doc)


def test_every_container_is_locked_down(docs: list[Doc]) -> None:
    for doc in workloads(docs):
        spec = pod_spec(doc)
        for container in spec["containers"]:
            sc = _container_security(spec, container)
            where = f"{_name(doc)}: {container['name']}"
            assert sc.get("allowPrivilegeEscalation") is False, where
            assert sc.get("privileged", False) is False, where
            assert sc.get("readOnlyRootFilesystem") is True, where
            assert "ALL" in sc.get("capabilities", {}).get("drop", []), where
            assert not sc.get("capabilities", {}).get("add"), where
            assert sc.get("seccompProfile", {}).get("type") == "RuntimeDefault", where


def test_a_read_only_root_gets_a_writable_tmp(docs: list[Doc]) -> None:
    for doc in workloads(docs):
        spec = pod_spec(doc)
        empty_dirs = {v["name"] for v in spec.get("volumes", []) if "emptyDir" in v}
        for container in spec["containers"]:
            mounts = {m["mountPath"]: m["name"] for m in container.get("volumeMounts", [])}
            assert mounts.get("/tmp") in empty_dirs, f"{_name(doc)}: /tmp is not an emptyDir"


def test_pods_share_nothing_with_the_node_and_mount_no_api_token(docs: list[Doc]) -> None:
    for doc in workloads(docs):
        spec = pod_spec(doc)
        for field in ("hostNetwork", "hostPID", "hostIPC"):
            assert not spec.get(field), f"{_name(doc)}: {field}"
        assert not any("hostPath" in v for v in spec.get("volumes", [])), _name(doc)
        assert spec.get("automountServiceAccountToken") is False, _name(doc)


def test_every_container_has_requests_and_limits(docs: list[Doc]) -> None:
    for container in all_containers(docs):
        resources = container.get("resources", {})
        for kind in ("requests", "limits"):
            for resource in ("cpu", "memory"):
                assert resources.get(kind, {}).get(resource), (container["name"], kind, resource)


def test_every_image_is_tagged_and_never_latest(docs: list[Doc]) -> None:
    for container in all_containers(docs):
        _, tag = split_image(container["image"])
        assert tag, f"{container['image']}: no tag"
        assert tag != "latest", f"{container['image']}: latest"


def test_every_container_has_liveness_and_readiness_probes(docs: list[Doc]) -> None:
    for container in all_containers(docs):
        assert "livenessProbe" in container, container["name"]
        assert "readinessProbe" in container, container["name"]


def test_no_credential_is_a_literal_env_value(docs: list[Doc]) -> None:
    for container in all_containers(docs):
        for env in container.get("env", []):
            value = env.get("value", "")
            if SECRET_NAME.search(env["name"]):
                assert "value" not in env, f"{env['name']} holds a literal"
            assert not URL_WITH_PASSWORD.search(value.replace("$(REDIS_PASSWORD)", "")), env


def test_every_referenced_config_and_secret_key_exists(docs: list[Doc]) -> None:
    configs = {d["metadata"]["name"]: d.get("data", {}) for d in docs if d["kind"] == "ConfigMap"}
    secrets = {d["metadata"]["name"]: d["stringData"] for d in load_docs(SECRET_EXAMPLE)}
    for container in all_containers(docs):
        for source in container.get("envFrom", []):
            if "configMapRef" in source:
                assert source["configMapRef"]["name"] in configs
            if "secretRef" in source:
                assert source["secretRef"]["name"] in secrets
        for env in container.get("env", []):
            ref = env.get("valueFrom", {})
            if "configMapKeyRef" in ref:
                assert ref["configMapKeyRef"]["key"] in configs[ref["configMapKeyRef"]["name"]]
            if "secretKeyRef" in ref:
                assert ref["secretKeyRef"]["key"] in secrets[ref["secretKeyRef"]["name"]]


def test_the_workloads_are_the_known_components(docs: list[Doc]) -> None:
    assert {d["metadata"]["name"] for d in workloads(docs)} == set(COMPONENTS)


@pytest.mark.parametrize(("name", "subcommand"), COMPONENTS.items())
def test_each_component_runs_its_real_zns_command(
    docs: list[Doc], name: str, subcommand: str
) -> None:
    deployment = find(docs, "Deployment", name)
    assert deployment["metadata"]["labels"]["app.kubernetes.io/component"] == subcommand
    [container] = pod_spec(deployment)["containers"]
    assert "command" not in container, "the image's ENTRYPOINT (zns) must stay"
    assert container["args"][0] == subcommand
    assert_zns_command(container["args"], f"{name} args")


@pytest.mark.parametrize("name", WITH_DISRUPTION_BUDGET)
def test_disruption_budgets_cover_their_pods(docs: list[Doc], name: str) -> None:
    deployment = find(docs, "Deployment", name)
    pdb = find(docs, "PodDisruptionBudget", name)
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert pdb["spec"].get("maxUnavailable", 0) >= 1 or "minAvailable" in pdb["spec"]


@pytest.mark.parametrize("name", SERVED)
def test_services_reach_their_own_pods_on_a_named_container_port(
    docs: list[Doc], name: str
) -> None:
    service = find(docs, "Service", name)
    deployment = find(docs, "Deployment", name)
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()
    component = labels["app.kubernetes.io/component"]
    for other in workloads(docs):
        if other is not deployment:
            other_labels = other["spec"]["template"]["metadata"]["labels"]
            assert not service["spec"]["selector"].items() <= other_labels.items(), component
    assert service["spec"].get("type", "ClusterIP") == "ClusterIP", "expose it via your ingress"
    [container] = pod_spec(deployment)["containers"]
    port_names = {p["name"] for p in container["ports"]}
    for port in service["spec"]["ports"]:
        assert port["targetPort"] in port_names, f"{name}: {port['targetPort']}"


def _selects(policy: Doc, deployment: Doc) -> bool:
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    selector: dict[str, str] = policy["spec"]["podSelector"].get("matchLabels", {})
    return bool(selector) and selector.items() <= labels.items()


def _allowed_ports(rules: list[Doc]) -> set[int]:
    return {port["port"] for rule in rules for port in rule.get("ports", [])}


def test_every_workload_has_a_network_policy_opening_only_its_ports(docs: list[Doc]) -> None:
    policies = [d for d in docs if d["kind"] == "NetworkPolicy"]
    for doc in workloads(docs):
        selecting = [p for p in policies if _selects(p, doc)]
        assert len(selecting) == 1, f"{_name(doc)}: {len(selecting)} NetworkPolicies select it"
        [policy] = selecting
        assert set(policy["spec"]["policyTypes"]) == {"Ingress", "Egress"}, _name(doc)
        container_ports = {
            p["containerPort"] for c in pod_spec(doc)["containers"] for p in c.get("ports", [])
        }
        assert _allowed_ports(policy["spec"]["ingress"]) == container_ports, _name(doc)
        egress = _allowed_ports(policy["spec"]["egress"])
        assert {53, 6379} <= egress, f"{_name(doc)}: DNS and Redis"


# -- the worker ----------------------------------------------------------------------------------


def _worker(docs: list[Doc]) -> tuple[Doc, Doc]:
    deployment = find(docs, "Deployment", "zns-worker")
    [container] = pod_spec(deployment)["containers"]
    return deployment, container


def test_worker_grace_period_outlives_the_hard_time_limit(docs: list[Doc]) -> None:
    deployment, _ = _worker(docs)
    grace = pod_spec(deployment)["terminationGracePeriodSeconds"]
    assert grace > CELERY.time_limit_s, "SIGKILL would cut a task that is still in its time limit"


def test_worker_runs_zns_worker_and_probes_with_zns_check(docs: list[Doc]) -> None:
    _, container = _worker(docs)
    assert "command" not in container, "the image's ENTRYPOINT (zns) must stay"
    assert container["args"][0] == "worker"
    assert_zns_command(container["args"], "worker args")
    liveness = container["livenessProbe"]["exec"]["command"]
    readiness = container["readinessProbe"]["exec"]["command"]
    for probe in (liveness, readiness, container["startupProbe"]["exec"]["command"]):
        assert probe[:2] == ["zns", "check"], "cheap probes: the heartbeat file, no celery inspect"
        assert_zns_command(probe[1:], "probe")
    assert "--ready" not in liveness, "liveness must not depend on Redis (a Redis blip kills pods)"
    assert "--ready" in readiness


def test_worker_probes_leave_time_for_the_command(docs: list[Doc]) -> None:
    _, container = _worker(docs)
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        assert container[probe]["timeoutSeconds"] >= 5, f"{probe}: a Python start takes ~1 s"


def test_worker_metrics_are_scrape_annotated_on_the_metrics_port(docs: list[Doc]) -> None:
    deployment, container = _worker(docs)
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/port"] == str(CELERY.metrics_port)
    assert annotations["prometheus.io/path"] == "/metrics"
    ports = {p["containerPort"] for p in container["ports"]}
    assert CELERY.metrics_port in ports


def test_worker_replicas_belong_to_the_autoscaler(docs: list[Doc]) -> None:
    deployment, _ = _worker(docs)
    assert "replicas" not in deployment["spec"], "kubectl apply would reset KEDA's choice"


# -- KEDA ----------------------------------------------------------------------------------------


def test_keda_never_scales_workers_to_zero(docs: list[Doc]) -> None:
    scaled = find(docs, "ScaledObject", "zns-worker")["spec"]
    assert scaled["minReplicaCount"] >= 1, "a Redis broker restores unacked jobs only via a worker"
    assert scaled["maxReplicaCount"] >= scaled["minReplicaCount"]
    assert "idleReplicaCount" not in scaled, "idle replicas 0 would scale to zero"


def test_keda_scales_on_our_queue_with_the_workers_redis(docs: list[Doc]) -> None:
    scaled = find(docs, "ScaledObject", "zns-worker")["spec"]
    deployment, container = _worker(docs)
    assert scaled["scaleTargetRef"]["name"] == deployment["metadata"]["name"]
    [trigger] = scaled["triggers"]
    assert trigger["type"] == "redis"
    assert trigger["metadata"]["listName"] == QUEUE
    env_names = {e["name"] for e in container["env"]}
    assert trigger["metadata"]["addressFromEnv"] in env_names
    auth = find(docs, "TriggerAuthentication", trigger["authenticationRef"]["name"])
    [password] = auth["spec"]["secretTargetRef"]
    assert password["parameter"] == "password"
    worker_secret_refs = {
        (e["valueFrom"]["secretKeyRef"]["name"], e["valueFrom"]["secretKeyRef"]["key"])
        for e in container["env"]
        if "secretKeyRef" in e.get("valueFrom", {})
    }
    assert (password["name"], password["key"]) in worker_secret_refs, "one password, one place"


# -- Flower --------------------------------------------------------------------------------------


def test_flower_requires_basic_auth_from_a_secret(docs: list[Doc]) -> None:
    deployment = find(docs, "Deployment", "zns-flower")
    [container] = pod_spec(deployment)["containers"]
    assert container["args"][0] == "flower"
    assert "--no-auth" not in container["args"]
    assert_zns_command(container["args"], "flower args")
    auth = {e["name"]: e for e in container["env"]}["ZNS_FLOWER_BASIC_AUTH"]
    assert "secretKeyRef" in auth["valueFrom"]


def test_flower_gets_the_broker_but_no_zalo_credentials(docs: list[Doc]) -> None:
    [container] = pod_spec(find(docs, "Deployment", "zns-flower"))["containers"]
    assert not any("secretRef" in source for source in container.get("envFrom", []))
    names = {e["name"] for e in container["env"]}
    assert not names & {"ZNS_SECRET_KEY", "ZNS_ACCESS_TOKEN", "ZNS_REFRESH_TOKEN"}


# -- the webhook receiver ------------------------------------------------------------------------


def _webhooks(docs: list[Doc]) -> tuple[Doc, Doc]:
    deployment = find(docs, "Deployment", "zns-webhooks")
    [container] = pod_spec(deployment)["containers"]
    return deployment, container


def _option(args: list[str], option: str) -> str | None:
    return args[args.index(option) + 1] if option in args else None


def test_webhooks_runs_zns_webhooks_on_every_interface_of_its_port(docs: list[Doc]) -> None:
    _, container = _webhooks(docs)
    args = container["args"]
    assert args[0] == "webhooks"
    assert_zns_command(args, "webhooks args")
    assert _option(args, "--host") == "0.0.0.0", "its default, 127.0.0.1, is unreachable in a pod"
    port = int(_option(args, "--port") or WEBHOOKS.port)
    assert port, "port 0 picks a random port: no probe or Service could find it"
    assert {"name": "http", "containerPort": port, "protocol": "TCP"} in container["ports"]


def test_webhooks_probes_hit_the_receivers_health_route(docs: list[Doc]) -> None:
    _, container = _webhooks(docs)
    app = create_app(
        cast(WebhookReceiver, object()), path=WEBHOOKS.path, max_body_bytes=WEBHOOKS.max_body_bytes
    )
    routes = {(r.path, m) for r in app.routes if isinstance(r, Route) for m in r.methods or ()}
    for probe in ("livenessProbe", "readinessProbe"):
        get = container[probe]["httpGet"]
        assert get["path"] == HEALTH_PATH, probe
        assert (get["path"], "GET") in routes, f"{probe}: the app serves no GET {get['path']}"
        assert get["port"] == "http", probe


def test_webhooks_metrics_are_scrape_annotated_on_the_configured_port(docs: list[Doc]) -> None:
    deployment, container = _webhooks(docs)
    config = find(docs, "ConfigMap", "zns-config")["data"]
    port = int(config.get("ZNS_WEBHOOKS__METRICS_PORT", WEBHOOKS.metrics_port))
    assert port, "metrics are on"
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/port"] == str(port)
    assert annotations["prometheus.io/path"] == "/metrics"
    assert port in {p["containerPort"] for p in container["ports"]}
    service_ports = {p["port"] for p in find(docs, "Service", "zns-webhooks")["spec"]["ports"]}
    assert port not in service_ports, "metrics stay off the Service the ingress routes to"


def test_webhooks_gets_its_signing_key_and_no_zalo_credential(docs: list[Doc]) -> None:
    _, container = _webhooks(docs)
    assert not any("secretRef" in source for source in container.get("envFrom", []))
    env = {e["name"]: e for e in container["env"]}
    assert "secretKeyRef" in env["ZNS_WEBHOOK_SECRET_KEY"]["valueFrom"]
    assert not set(env) & ZALO_CREDENTIALS, "an internet-facing pod that could send messages"
    assert "ZNS_REDIS_URL" in env


def test_webhooks_keep_two_pods_through_rollouts(docs: list[Doc]) -> None:
    deployment, _ = _webhooks(docs)
    spec = deployment["spec"]
    assert spec["replicas"] >= 2, "one pod down would leave Zalo's events unanswered"
    assert spec["strategy"]["rollingUpdate"]["maxUnavailable"] == 0


def test_webhooks_egress_reaches_redis_and_dns_but_not_zalo(docs: list[Doc]) -> None:
    policy = find(docs, "NetworkPolicy", "zns-webhooks")
    assert _allowed_ports(policy["spec"]["egress"]) == {53, 6379}


# -- ConfigMaps and Secrets ----------------------------------------------------------------------


def test_config_maps_hold_no_credentials(docs: list[Doc]) -> None:
    for doc in docs:
        if doc["kind"] != "ConfigMap":
            continue
        for name, value in doc.get("data", {}).items():
            assert not SECRET_NAME.search(name), f"{name} belongs in a Secret"
            assert not URL_WITH_PASSWORD.search(value), f"{name} holds a password"
            assert not LONG_OPAQUE.match(value), f"{name} looks like a key or token"


def test_config_map_names_only_real_settings(docs: list[Doc]) -> None:
    data = find(docs, "ConfigMap", "zns-config")["data"]
    for name in data:
        if name.startswith("ZNS_"):
            assert _is_setting(name), f"{name}: no such setting (a typo is silently ignored)"
    # And the values load: a bad one would stop every pod at start.
    fields = {k.removeprefix("ZNS_").lower(): v for k, v in data.items() if k.startswith("ZNS_")}
    nested: dict[str, dict[str, str]] = {}
    for field in [f for f in fields if NESTED_DELIMITER in f]:
        group, sub = field.split(NESTED_DELIMITER, 1)
        nested.setdefault(group, {})[sub] = fields.pop(field)
    Settings.model_validate({**fields, **nested})  # values only: no environment, no .env


def _is_setting(variable: str) -> bool:
    path = variable.removeprefix("ZNS_").lower().split(NESTED_DELIMITER)
    model: type[BaseModel] = Settings
    for part in path[:-1]:
        annotation = model.model_fields[part].annotation if part in model.model_fields else None
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return False
        model = annotation
    return path[-1] in model.model_fields


def test_the_example_secrets_hold_placeholders_only() -> None:
    for secret in load_docs(SECRET_EXAMPLE):
        assert secret["kind"] == "Secret"
        assert "data" not in secret, "base64 data hides what it holds: use stringData"
        for name, value in secret["stringData"].items():
            assert PLACEHOLDER in value, f"{name}: not a placeholder"
            assert not LONG_OPAQUE.match(value.replace(PLACEHOLDER, "")), name


def test_no_secret_resource_is_applied_by_the_kustomizations(docs: list[Doc]) -> None:
    assert not [d for d in docs if d["kind"] == "Secret"], "Secrets are created out of band"


# -- the rules themselves catch what they are for ------------------------------------------------


def test_every_credential_setting_is_recognised_as_one() -> None:
    secret_fields = [
        name
        for name, field in Settings.model_fields.items()
        if "SecretStr" in str(field.annotation)
    ]
    assert secret_fields, "Settings declares its secrets as SecretStr"
    for name in [*secret_fields, "accounts__oa2__access_token", "flower_basic_auth"]:
        assert SECRET_NAME.search(f"ZNS_{name.upper()}"), name
    for name in ("ZNS_KEY_PREFIX", "ZNS_TOKEN_TYPE", "ZNS_OAUTH_BASE_URL", "REDIS_ADDRESS"):
        assert not SECRET_NAME.search(name), name


def _unlock_worker(docs: list[Doc]) -> None:
    _worker(docs)[1]["securityContext"]["readOnlyRootFilesystem"] = False


def _root_worker(docs: list[Doc]) -> None:
    _worker(docs)[1]["securityContext"]["runAsUser"] = 0


def _short_grace(docs: list[Doc]) -> None:
    pod_spec(_worker(docs)[0])["terminationGracePeriodSeconds"] = 30


def _scale_to_zero(docs: list[Doc]) -> None:
    find(docs, "ScaledObject", "zns-worker")["spec"]["minReplicaCount"] = 0


def _latest(docs: list[Doc]) -> None:
    _worker(docs)[1]["image"] = "zns-journey-worker:latest"


def _token_in_config(docs: list[Doc]) -> None:
    find(docs, "ConfigMap", "zns-config")["data"]["ZNS_ACCESS_TOKEN"] = "x"


def _typo_in_config(docs: list[Doc]) -> None:
    find(docs, "ConfigMap", "zns-config")["data"]["ZNS_CELERY_CONCURRENCY"] = "8"


def _no_limits(docs: list[Doc]) -> None:
    del _worker(docs)[1]["resources"]["limits"]


def _inspect_probe(docs: list[Doc]) -> None:
    _worker(docs)[1]["livenessProbe"]["exec"]["command"] = ["celery", "inspect", "ping"]


def _webhooks_on_loopback(docs: list[Doc]) -> None:
    _webhooks(docs)[1]["args"] = ["webhooks", "--port", "8780"]


def _webhooks_unknown_option(docs: list[Doc]) -> None:
    _webhooks(docs)[1]["args"].append("--allow-remote")  # the sandbox's flag, not the receiver's


def _webhooks_probe_elsewhere(docs: list[Doc]) -> None:
    _webhooks(docs)[1]["readinessProbe"]["httpGet"]["path"] = "/health"


def _webhooks_app_secret(docs: list[Doc]) -> None:
    _webhooks(docs)[1]["envFrom"].append({"secretRef": {"name": "zns-secrets"}})


def _webhooks_to_zalo(docs: list[Doc]) -> None:
    find(docs, "NetworkPolicy", "zns-webhooks")["spec"]["egress"].append({"ports": [{"port": 443}]})


def _webhooks_without_budget(docs: list[Doc]) -> None:
    find(docs, "PodDisruptionBudget", "zns-webhooks")["spec"]["selector"]["matchLabels"] = {
        "app.kubernetes.io/component": "worker"
    }


def _webhooks_unpoliced(docs: list[Doc]) -> None:
    docs.remove(find(docs, "NetworkPolicy", "zns-webhooks"))


@pytest.mark.parametrize(
    ("breakage", "rule"),
    [
        (_unlock_worker, test_every_container_is_locked_down),
        (_root_worker, test_every_container_runs_as_a_high_non_root_uid),
        (_short_grace, test_worker_grace_period_outlives_the_hard_time_limit),
        (_scale_to_zero, test_keda_never_scales_workers_to_zero),
        (_latest, test_every_image_is_tagged_and_never_latest),
        (_token_in_config, test_config_maps_hold_no_credentials),
        (_typo_in_config, test_config_map_names_only_real_settings),
        (_no_limits, test_every_container_has_requests_and_limits),
        (_inspect_probe, test_worker_runs_zns_worker_and_probes_with_zns_check),
        (_webhooks_on_loopback, test_webhooks_runs_zns_webhooks_on_every_interface_of_its_port),
        (_webhooks_unknown_option, test_webhooks_runs_zns_webhooks_on_every_interface_of_its_port),
        (_webhooks_probe_elsewhere, test_webhooks_probes_hit_the_receivers_health_route),
        (_webhooks_app_secret, test_webhooks_gets_its_signing_key_and_no_zalo_credential),
        (_webhooks_to_zalo, test_webhooks_egress_reaches_redis_and_dns_but_not_zalo),
        (_webhooks_unpoliced, test_every_workload_has_a_network_policy_opening_only_its_ports),
    ],
    ids=lambda f: getattr(f, "__name__", "?"),
)
def test_each_rule_fails_on_the_breakage_it_guards_against(
    breakage: Callable[[list[Doc]], None], rule: Callable[[list[Doc]], None]
) -> None:
    docs = render(OVERLAY)
    rule(docs)  # the real manifests pass
    breakage(docs)
    with pytest.raises(AssertionError):
        rule(docs)


def test_the_disruption_budget_rule_fails_when_a_budget_misses_its_pods() -> None:
    docs = render(OVERLAY)
    test_disruption_budgets_cover_their_pods(docs, "zns-webhooks")
    _webhooks_without_budget(docs)
    with pytest.raises(AssertionError):
        test_disruption_budgets_cover_their_pods(docs, "zns-webhooks")
