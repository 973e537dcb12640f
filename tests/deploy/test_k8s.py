"""deploy/k8s: schema validation (strict, offline), and agreement with the Dockerfile, the compose
file, the apps' routes and settings, and the batch commands' arguments."""

import copy
import shutil
import subprocess
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from deploy_files import REPO, load_compose, parse_dockerfile
from k8s_files import (
    K8S_DIR,
    KUBERNETES_VERSION,
    Manifest,
    consistency_problems,
    find,
    load_manifests,
    manifest_files,
    pod_spec,
)

from service import batch, batch_merge
from service.api.settings import Settings as ApiSettings
from service.batch_shards import SHARD_INDEX_ENV, Shard, shard_from_environ
from service.sidecar.settings import Settings as SidecarSettings

KEYS = {"API_KEYS": "k8s-test-key-1"}
PARSERS = {"service.batch": batch.build_parser, "service.batch_merge": batch_merge.build_parser}


@pytest.fixture(scope="module")
def manifests() -> list[Manifest]:
    return load_manifests()


@pytest.fixture(scope="module")
def app_paths(model_dir: Path) -> dict[str, set[str]]:
    """GET paths of the two apps, from the OpenAPI schema of their create_app (no model is loaded)."""
    from service.api.app import create_app as create_api
    from service.sidecar.app import create_app as create_sidecar

    apps = {
        "api": create_api(ApiSettings.from_environ({})),
        "gradcam": create_sidecar(SidecarSettings(model_dir=model_dir)),
    }
    return {
        target: {path for path, operations in app.openapi()["paths"].items() if "get" in operations}
        for target, app in apps.items()
    }


SETTINGS_VARIABLES = {
    "api": {name.upper() for name in ApiSettings.model_fields},
    "gradcam": {name.upper() for name in SidecarSettings.model_fields},
}


def _problems(
    manifests: list[Manifest], app_paths: dict[str, set[str]], changed: dict[str, Any] | None = None
) -> list[str]:
    sides: dict[str, Any] = {
        "manifests": manifests,
        "stages": parse_dockerfile(),
        "compose_services": load_compose(KEYS)["services"],
        "app_paths": app_paths,
        "settings_variables": SETTINGS_VARIABLES,
        "parsers": PARSERS,
    }
    return consistency_problems(**{**sides, **(changed or {})})


# --- Schemas ------------------------------------------------------------------------------------------


def test_every_manifest_validates_against_the_kubernetes_schemas(manifests: list[Manifest]) -> None:
    kinds = set()
    for manifest in manifests:
        kubernetes_validate.validate(manifest.body, KUBERNETES_VERSION, strict=True)
        kinds.add(manifest.kind)
    assert {
        "Deployment",
        "Service",
        "ConfigMap",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
        "NetworkPolicy",
        "Job",
    } <= kinds


def test_strict_validation_refuses_a_misspelt_field(manifests: list[Manifest]) -> None:
    deployment = copy.deepcopy(find(manifests, "Deployment", "cxr-api"))
    deployment["spec"]["template"]["spec"]["containers"][0]["readinessprobe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError, match="readinessprobe"):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSION, strict=True)


def test_the_kustomization_lists_every_service_manifest() -> None:
    kustomization = yaml.safe_load((K8S_DIR / "kustomization.yaml").read_text())
    listed = set(kustomization["resources"])
    assert listed == {path.name for path in manifest_files() if path.parent == K8S_DIR}
    assert {image["name"] for image in kustomization["images"]} == {"cxr-api", "cxr-gradcam"}


def test_kubectl_renders_the_kustomization(manifests: list[Manifest]) -> None:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl not installed (its kustomize renders deploy/k8s)")
    rendered = subprocess.run(
        [kubectl, "kustomize", str(K8S_DIR)], capture_output=True, text=True, check=True
    ).stdout
    documents = [body for body in yaml.safe_load_all(rendered) if body]
    for body in documents:
        kubernetes_validate.validate(body, KUBERNETES_VERSION, strict=True)
    top_level = {(m.kind, m.name) for m in manifests if m.file.parent == K8S_DIR}
    assert {(body["kind"], body["metadata"]["name"]) for body in documents} == top_level


# --- In step with the Dockerfile, the compose file and the apps -----------------------------------------


def test_manifests_agree_with_the_dockerfile_compose_file_and_apps(
    manifests: list[Manifest], app_paths: dict[str, set[str]]
) -> None:
    assert {"/healthz", "/readyz"} <= app_paths["api"] and {"/healthz", "/readyz"} <= app_paths["gradcam"]
    assert _problems(manifests, app_paths) == []


def _set_probe_path(manifests: list[Manifest], path: str) -> list[Manifest]:
    changed = copy.deepcopy(manifests)
    container = pod_spec(find(changed, "Deployment", "cxr-api"))["containers"][0]
    container["readinessProbe"]["httpGet"]["path"] = path
    return changed


def _set(manifests: list[Manifest], name: str, key: str, value: Any) -> list[Manifest]:
    changed = copy.deepcopy(manifests)
    (body,) = [m.body for m in changed if m.name == name and m.kind in ("Deployment", "Job")]
    body["spec"]["template"]["spec"]["containers"][0][key] = value
    return changed


CHANGES: dict[str, tuple[Callable[..., dict[str, Any]], str]] = {
    "probe path in the manifest": (
        lambda m, paths: {"manifests": _set_probe_path(m, "/ready")},
        "readinessProbe path /ready is not a GET route",
    ),
    "probe path in the app": (
        lambda m, paths: {"app_paths": {**paths, "api": paths["api"] - {"/readyz"}}},
        "path /readyz is not a GET route",
    ),
    "command in the manifest": (
        lambda m, paths: {"manifests": _set(m, "cxr-gradcam", "command", ["python", "-m", "service.api"])},
        "is not the image's CMD",
    ),
    "command in the Dockerfile": (
        lambda m, paths: {"stages": _with_cmd("gradcam", ["python", "-m", "service.gradcam"])},
        "is not the image's CMD",
    ),
    "port in the manifest": (
        lambda m, paths: {
            "manifests": _set(m, "cxr-api", "ports", [{"name": "http", "containerPort": 8080}])
        },
        "the image listens on [8000]",
    ),
    "image name": (
        lambda m, paths: {"manifests": _set(m, "cxr-api", "image", "cxr-server:0.1.0")},
        "is not built by the compose file",
    ),
    "unknown variable": (
        lambda m, paths: {"manifests": _set(m, "cxr-api", "env", [{"name": "API_KEY", "value": ""}])},
        "API_KEY unknown to the api settings class",
    ),
    "setting removed from the app": (
        lambda m, paths: {"settings_variables": {**SETTINGS_VARIABLES, "gradcam": {"GRADCAM_PORT"}}},
        "unknown to the gradcam settings class",
    ),
    "batch flag": (
        lambda m, paths: {
            "manifests": _set(m, "cxr-score-archive", "args", ["/archive", "--output", "x.csv"])
        },
        "refuses its args",
    ),
}


def _with_cmd(target: str, command: list[str]) -> dict[str, Any]:
    stages = parse_dockerfile()
    stages[target].cmd = command
    return stages


@pytest.mark.parametrize("change", CHANGES)
def test_the_check_fails_when_one_side_changes(
    change: str, manifests: list[Manifest], app_paths: dict[str, set[str]]
) -> None:
    make, expected = CHANGES[change]
    problems = _problems(manifests, app_paths, make(manifests, app_paths))
    assert any(expected in problem for problem in problems), problems


def test_settings_values_are_accepted_by_the_settings_classes(
    manifests: list[Manifest], model_dir: Path
) -> None:
    stages = parse_dockerfile()
    api = find(manifests, "ConfigMap", "cxr-api-settings")["data"]
    settings = ApiSettings.from_environ({**stages["api"].env, **api, **KEYS})
    assert settings.bind_host == "0.0.0.0"  # with a key from the Secret the API listens on the pod IP
    sidecar = find(manifests, "ConfigMap", "cxr-gradcam-settings")["data"]
    fields = {**stages["gradcam"].env, **sidecar, "MODEL_DIR": str(model_dir)}
    known = {
        key.lower(): value for key, value in fields.items() if key.lower() in SidecarSettings.model_fields
    }
    SidecarSettings(**known)


def test_images_carry_the_project_version(manifests: list[Manifest]) -> None:
    version = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    kustomization = yaml.safe_load((K8S_DIR / "kustomization.yaml").read_text())
    assert {image["newTag"] for image in kustomization["images"]} == {version}
    for manifest in manifests:
        if manifest.kind in ("Deployment", "Job"):
            for container in pod_spec(manifest.body)["containers"]:
                assert container["image"].endswith(f":{version}"), (manifest.name, container["image"])


# --- Security, secrets, scaling ---------------------------------------------------------------------------


def test_pods_are_non_root_read_only_without_capabilities(manifests: list[Manifest]) -> None:
    for manifest in manifests:
        if manifest.kind not in ("Deployment", "Job"):
            continue
        spec = pod_spec(manifest.body)
        assert spec["securityContext"]["runAsNonRoot"] is True, manifest.name
        assert spec["automountServiceAccountToken"] is False, manifest.name
        for container in spec["containers"]:
            context = container["securityContext"]
            assert context["readOnlyRootFilesystem"] is True, manifest.name
            assert context["allowPrivilegeEscalation"] is False, manifest.name
            assert context["capabilities"]["drop"] == ["ALL"], manifest.name
            limits, requests = container["resources"]["limits"], container["resources"]["requests"]
            assert {"cpu", "memory"} <= set(limits) and {"cpu", "memory"} <= set(requests), manifest.name


def test_api_keys_come_from_a_secret_and_no_secret_is_in_a_manifest(manifests: list[Manifest]) -> None:
    assert not [m for m in manifests if m.kind == "Secret"]
    for config_map in (m for m in manifests if m.kind == "ConfigMap"):
        assert "API_KEYS" not in config_map.body["data"]
    api = pod_spec(find(manifests, "Deployment", "cxr-api"))["containers"][0]
    (keys,) = [item for item in api["env"] if item["name"] == "API_KEYS"]
    assert set(keys) == {"name", "valueFrom"}
    assert keys["valueFrom"]["secretKeyRef"] == {"name": "cxr-api-keys", "key": "API_KEYS"}


def test_autoscaler_budget_and_network_policy_point_at_the_right_pods(manifests: list[Manifest]) -> None:
    api = find(manifests, "Deployment", "cxr-api")
    api_labels = api["spec"]["template"]["metadata"]["labels"]
    gradcam_labels = find(manifests, "Deployment", "cxr-gradcam")["spec"]["template"]["metadata"]["labels"]
    api_container = pod_spec(api)["containers"][0]

    hpa = find(manifests, "HorizontalPodAutoscaler", "cxr-api")
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "cxr-api"}
    (metric,) = hpa["spec"]["metrics"]
    assert (
        metric["resource"]["name"] == "cpu" and 0 < metric["resource"]["target"]["averageUtilization"] < 100
    )
    assert "cpu" in api_container["resources"]["requests"]  # utilisation is measured against it
    assert hpa["spec"]["minReplicas"] >= 2

    pdb = find(manifests, "PodDisruptionBudget", "cxr-api")
    assert pdb["spec"]["selector"]["matchLabels"].items() <= api_labels.items()
    assert pdb["spec"]["minAvailable"] < hpa["spec"]["minReplicas"]  # a drain can still evict one

    policy = find(manifests, "NetworkPolicy", "cxr-gradcam-from-api-only")
    assert policy["spec"]["podSelector"]["matchLabels"].items() <= gradcam_labels.items()
    assert not policy["spec"]["podSelector"]["matchLabels"].items() <= api_labels.items()
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    (rule,) = policy["spec"]["ingress"]
    (source,) = rule["from"]
    assert (
        set(source) == {"podSelector"} and source["podSelector"]["matchLabels"].items() <= api_labels.items()
    )
    assert rule["ports"] == [{"protocol": "TCP", "port": 8001}]


# --- Archive scoring ----------------------------------------------------------------------------------------


def test_the_indexed_job_gives_each_pod_its_own_shard(
    manifests: list[Manifest], monkeypatch: pytest.MonkeyPatch
) -> None:
    job = find(manifests, "Job", "cxr-score-archive")
    spec = job["spec"]
    assert spec["completionMode"] == "Indexed"
    container = pod_spec(job)["containers"][0]
    env = {item["name"]: item["value"] for item in container["env"]}
    count = spec["completions"]
    # What each pod's command sees: the Job controller sets JOB_COMPLETION_INDEX in the pod.
    shards = {shard_from_environ({**env, SHARD_INDEX_ENV: str(index)}) for index in range(count)}
    assert shards == {Shard(index, count) for index in range(count)}
    with pytest.raises(ValueError, match="shard index"):
        shard_from_environ({**env, SHARD_INDEX_ENV: str(count)})
    # The workers follow the CPU limit (the node's core count is not the pod's), each scoring its
    # own files with one onnxruntime thread (batch size 1): one busy thread per CPU.
    cpus = int(container["resources"]["limits"]["cpu"])
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    args = batch.build_parser().parse_args(container["args"])
    assert args.workers == cpus and args.batch_size == 1 and args.threads == 1
    mounts = {mount["name"]: mount for mount in container["volumeMounts"]}
    assert mounts["archive"]["readOnly"] is True and Path(args.source) == Path(mounts["archive"]["mountPath"])
    assert args.out.parent == Path(mounts["scores"]["mountPath"])

    merge = pod_spec(find(manifests, "Job", "cxr-merge-scores"))["containers"][0]
    merged = batch_merge.build_parser().parse_args(merge["args"])
    assert merged.shards == count and merged.out == args.out and merged.source == args.source
