"""The Kubernetes manifests and the compose file are valid and agree with the service.

No cluster or Docker engine runs here, so the checks are offline: every built-in
Kubernetes object validates (strictly: no unknown field) against the Kubernetes JSON
schemas of ``kubernetes-validate``; the ServiceMonitor (a Prometheus Operator resource
those schemas do not cover) and the compose file are checked field by field; every
``SEGSTREAM_*`` variable they set is a setting and its value passes the settings'
validation; selectors, ports and probes point at what exists; and the compose CLI's own
``config`` check must accept the compose file (without a Docker engine).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any
from unittest.mock import patch

import kubernetes_validate
import pytest
import yaml

from segstream.api.access import token_hash
from segstream.settings import Settings

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
KUBERNETES = DEPLOY / "kubernetes"
COMPOSE = DEPLOY / "compose" / "compose.yaml"
KUBERNETES_VERSION = "1.33.0"
BUILT_IN_GROUPS = ("v1", "apps/v1", "policy/v1")


def documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def manifests() -> dict[tuple[str, str], dict[str, Any]]:
    """Every object of the kustomization and the secret template, by (kind, name)."""
    kustomization = yaml.safe_load((KUBERNETES / "kustomization.yaml").read_text())
    files = [KUBERNETES / name for name in kustomization["resources"]]
    files.append(KUBERNETES / "secret.example.yaml")
    return {
        (doc["kind"], doc["metadata"]["name"]): doc for path in files for doc in documents(path)
    }


OBJECTS = manifests()


def env_settings(variables: dict[str, str]) -> Settings:
    """The settings a worker with exactly these variables reads (validated as it would)."""
    for name in variables:
        assert name.startswith("SEGSTREAM_"), name
        assert name.removeprefix("SEGSTREAM_").lower() in Settings.model_fields, name
    others = {k: v for k, v in os.environ.items() if not k.startswith("SEGSTREAM_")}
    with patch.dict(os.environ, {**others, **variables}, clear=True):
        return Settings()


BUILT_IN = sorted(key for key, doc in OBJECTS.items() if doc["apiVersion"] in BUILT_IN_GROUPS)


def test_every_object_is_built_in_but_the_monitors() -> None:
    assert set(OBJECTS) - set(BUILT_IN) == {
        ("ServiceMonitor", "segstream"),
        ("PodMonitor", "segstream-webhooks"),
    }


def test_the_webhook_delivery_runs_with_the_worker_settings_and_is_scraped_as_its_job() -> None:
    deployment = OBJECTS[("Deployment", "segstream-webhooks")]
    pod = deployment["spec"]["template"]
    (container,) = pod["spec"]["containers"]
    assert container["args"] == ["webhooks"]
    config = OBJECTS[("ConfigMap", "segstream-config")]["data"]
    secret = OBJECTS[("Secret", "segstream-secrets")]["stringData"]
    env = {e["name"]: e.get("value", "10.0.0.9") for e in container["env"]}
    settings = env_settings({**config, **secret, **env})
    (port,) = container["ports"]
    assert port["containerPort"] == settings.webhook_metrics_port
    assert settings.webhook_metrics_host == "0.0.0.0"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    partitions = int(config["SEGSTREAM_TOPIC_PARTITIONS"])
    assert 1 <= deployment["spec"]["replicas"] <= partitions
    monitor = OBJECTS[("PodMonitor", "segstream-webhooks")]
    assert monitor["spec"]["selector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()
    (endpoint,) = monitor["spec"]["podMetricsEndpoints"]
    assert (endpoint["port"], endpoint["path"]) == (port["name"], "/metrics")
    job = pod["metadata"]["labels"][monitor["spec"]["jobLabel"]]
    assert job == "segstream-webhooks"  # the job of the alert rules and the dashboard
    workers = OBJECTS[("StatefulSet", "segstream")]["spec"]["template"]["metadata"]["labels"]
    assert not monitor["spec"]["selector"]["matchLabels"].items() <= workers.items()


@pytest.mark.parametrize("key", BUILT_IN, ids=lambda key: f"{key[0]}/{key[1]}")
def test_built_in_objects_validate_strictly_against_the_kubernetes_schemas(
    key: tuple[str, str],
) -> None:
    kubernetes_validate.validate(OBJECTS[key], KUBERNETES_VERSION, strict=True)


def test_the_schemas_catch_a_wrong_field() -> None:
    """The validation above can fail: a misspelt field is refused."""
    broken = {**OBJECTS[("PodDisruptionBudget", "segstream")]}
    broken["spec"] = {**broken["spec"], "maxUnavailabel": 1}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSION, strict=True)


def test_the_worker_settings_are_settings_and_valid() -> None:
    config = OBJECTS[("ConfigMap", "segstream-config")]["data"]
    secret = OBJECTS[("Secret", "segstream-secrets")]["stringData"]
    settings = env_settings({**config, **secret, "SEGSTREAM_WEB_ADVERTISED_HOST": "10.0.0.9"})
    assert settings.web_host == "0.0.0.0" and settings.topic_replication == 3
    assert settings.kafka_security_protocol == "SASL_SSL"


def test_the_statefulset_fits_the_partitions_and_probes_the_health_routes() -> None:
    sts = OBJECTS[("StatefulSet", "segstream")]
    partitions = int(
        OBJECTS[("ConfigMap", "segstream-config")]["data"]["SEGSTREAM_TOPIC_PARTITIONS"]
    )
    assert 1 <= sts["spec"]["replicas"] <= partitions
    pod = sts["spec"]["template"]
    (container,) = pod["spec"]["containers"]
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/ready"
    advertised = {e["name"]: e for e in container["env"]}["SEGSTREAM_WEB_ADVERTISED_HOST"]
    assert advertised["valueFrom"]["fieldRef"]["fieldPath"] == "status.podIP"
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    data_dir = OBJECTS[("ConfigMap", "segstream-config")]["data"]["SEGSTREAM_DATA_DIR"]
    assert mounts["data"] == data_dir
    assert [t["metadata"]["name"] for t in sts["spec"]["volumeClaimTemplates"]] == ["data"]
    refs = {next(iter(ref.values()))["name"] for ref in container["envFrom"]}
    assert refs == {"segstream-config", "segstream-secrets"}
    assert sts["spec"]["serviceName"] in {name for kind, name in OBJECTS if kind == "Service"}


def test_selectors_select_the_workers_and_ports_exist() -> None:
    labels = OBJECTS[("StatefulSet", "segstream")]["spec"]["template"]["metadata"]["labels"]
    pdb = OBJECTS[("PodDisruptionBudget", "segstream")]
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
    services = {name: doc for (kind, name), doc in OBJECTS.items() if kind == "Service"}
    for service in services.values():
        assert service["spec"]["selector"].items() <= labels.items()
        assert [p["targetPort"] for p in service["spec"]["ports"]] == ["web"]
    monitor = OBJECTS[("ServiceMonitor", "segstream")]
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    selected = [
        name
        for name, service in services.items()
        if monitor["spec"]["selector"]["matchLabels"].items()
        <= service["metadata"]["labels"].items()
    ]
    assert selected == ["segstream-workers"], "each worker is scraped once"
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] == "web" and endpoint["path"] == "/metrics"


def test_the_secret_template_holds_token_hashes_only() -> None:
    secret = OBJECTS[("Secret", "segstream-secrets")]["stringData"]
    assert env_settings({"SEGSTREAM_API_TOKENS": secret["SEGSTREAM_API_TOKENS"]}).api_tokens


def test_the_compose_file_runs_kafka_two_workers_prometheus_and_grafana() -> None:
    compose = yaml.safe_load(COMPOSE.read_text())
    services = compose["services"]
    assert set(services) == {"kafka", "worker-1", "worker-2", "prometheus", "grafana"}
    assert services["kafka"]["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"
    for name in ("worker-1", "worker-2"):
        worker = services[name]
        settings = env_settings(worker["environment"])
        assert settings.advertised_host == name == worker["hostname"]
        assert settings.kafka_bootstrap.split(":")[0] == "kafka"
        assert (
            COMPOSE.parent / worker["build"]["context"] / worker["build"]["dockerfile"]
        ).exists()
        assert worker["depends_on"]["kafka"]["condition"] == "service_healthy"
    demo = token_hash("sst_compose-demo-token")
    assert env_settings(services["worker-1"]["environment"]).api_tokens == {demo: "platform"}
    for service in ("prometheus", "grafana"):
        for volume in services[service]["volumes"]:
            source = volume.split(":")[0]
            assert (COMPOSE.parent / source).exists(), source
    scraped = yaml.safe_load((COMPOSE.parent / "prometheus.yml").read_text())
    targets = scraped["scrape_configs"][0]["static_configs"][0]["targets"]
    assert targets == [
        f"{name}:{env_settings(services[name]['environment']).web_port}"
        for name in ("worker-1", "worker-2")
    ]
    checked = subprocess.run(
        [*compose_cli(), "-f", str(COMPOSE), "config", "--quiet"], capture_output=True, text=True
    )
    assert checked.returncode == 0, checked.stderr


def compose_cli() -> list[str]:
    """``docker compose`` (v2) where the plugin is installed, else ``docker-compose``
    (Debian's package, which ``.ci/run`` installs): the test fails, not skips, without."""
    docker = shutil.which("docker")
    if (
        docker
        and subprocess.run([docker, "compose", "version"], capture_output=True).returncode == 0
    ):
        return [docker, "compose"]
    legacy = shutil.which("docker-compose")
    assert legacy, "no compose CLI: apt-get install docker-compose (.ci/run does)"
    return [legacy]
