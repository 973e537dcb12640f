"""Read deploy/k8s and check it against the Dockerfile, the compose file and the apps.

`consistency_problems` takes every side as data (manifests, Dockerfile stages, compose services,
the apps' GET paths, the settings' variable names), so a test can change one side in memory and see
the check fail.
"""

import argparse
import contextlib
import io
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml
from deploy_files import REPO, Stage

K8S_DIR = REPO / "deploy" / "k8s"
KUBERNETES_VERSION = "1.33"  # the oldest release the manifests promise to run on (strict schemas)


@dataclass(frozen=True)
class Manifest:
    file: Path
    body: dict[str, Any]

    @property
    def kind(self) -> str:
        return str(self.body["kind"])

    @property
    def name(self) -> str:
        return str(self.body["metadata"]["name"])


def manifest_files() -> list[Path]:
    return sorted(path for path in K8S_DIR.rglob("*.yaml") if path.name != "kustomization.yaml")


def load_manifests(files: Sequence[Path] | None = None) -> list[Manifest]:
    out = []
    for file in files if files is not None else manifest_files():
        for body in yaml.safe_load_all(file.read_text()):
            if body:
                out.append(Manifest(file, body))
    return out


def find(manifests: Sequence[Manifest], kind: str, name: str) -> dict[str, Any]:
    return next(m.body for m in manifests if m.kind == kind and m.name == name)


def pod_spec(body: Mapping[str, Any]) -> dict[str, Any]:
    return dict(body["spec"]["template"]["spec"])


def workloads(manifests: Sequence[Manifest]) -> Iterator[Manifest]:
    return (m for m in manifests if m.kind in ("Deployment", "Job"))


def image_repository(image: str) -> str:
    return image.rsplit(":", 1)[0].rsplit("/", 1)[-1]


def targets_by_image(compose_services: Mapping[str, Any]) -> dict[str, str]:
    """Image repository (cxr-api) -> Dockerfile target (api), as the compose file builds them."""
    return {
        image_repository(service["image"]): service["build"]["target"]
        for service in compose_services.values()
        if "build" in service and "image" in service
    }


def argparse_accepts(build_parser: Callable[[], argparse.ArgumentParser], args: Sequence[str]) -> str | None:
    """None when the command line parses, else argparse's message."""
    stderr = io.StringIO()
    try:
        with contextlib.redirect_stderr(stderr):
            build_parser().parse_args(list(args))
    except SystemExit:
        return stderr.getvalue().strip().splitlines()[-1]
    return None


def consistency_problems(
    manifests: Sequence[Manifest],
    stages: Mapping[str, Stage],
    compose_services: Mapping[str, Any],
    app_paths: Mapping[str, set[str]],
    settings_variables: Mapping[str, set[str]],
    parsers: Mapping[str, Callable[[], argparse.ArgumentParser]],
) -> list[str]:
    """Where a manifest disagrees with the Dockerfile, the compose file or the app it runs.

    app_paths and settings_variables are keyed by Dockerfile target (api, gradcam); parsers by the
    module a Job runs (service.batch, ...).
    """
    problems: list[str] = []
    targets = targets_by_image(compose_services)
    config_maps = {m.name: m.body.get("data", {}) for m in manifests if m.kind == "ConfigMap"}
    for workload in workloads(manifests):
        where = f"{workload.file.name} {workload.kind}/{workload.name}"
        spec = pod_spec(workload.body)
        for container in spec["containers"]:
            here = f"{where} container {container['name']}"
            target = targets.get(image_repository(container["image"]))
            if target is None or target not in stages:
                problems.append(f"{here}: image {container['image']} is not built by the compose file")
                continue
            stage = stages[target]
            uid = stage.user.split(":")[0] if stage.user else None
            if str(spec.get("securityContext", {}).get("runAsUser")) != uid:
                problems.append(f"{here}: runAsUser is not the image's USER {uid}")
            command = container.get("command")
            if workload.kind == "Deployment":
                if command is not None and command != stage.cmd:
                    problems.append(f"{here}: command {command} is not the image's CMD {stage.cmd}")
                problems += _port_problems(here, container, stage)
                problems += _probe_problems(here, container, app_paths.get(target, set()))
                variables = {item["name"] for item in container.get("env", [])}
                for source in container.get("envFrom", []):
                    name = source["configMapRef"]["name"]
                    if name not in config_maps:
                        problems.append(f"{here}: ConfigMap {name} is not in deploy/k8s")
                    variables |= set(config_maps.get(name, {}))
                unknown = sorted(variables - settings_variables.get(target, set()))
                if unknown:
                    problems.append(f"{here}: {', '.join(unknown)} unknown to the {target} settings class")
            else:
                module = str(command[2]) if command and command[:2] == ["python", "-m"] else ""
                build_parser = parsers.get(module)
                if build_parser is None:
                    problems.append(f"{here}: command {command} is not a batch command of this repo")
                    continue
                message = argparse_accepts(build_parser, container.get("args", []))
                if message:
                    problems.append(f"{here}: python -m {module} refuses its args: {message}")
    problems += _service_problems(manifests)
    return problems


def _container_port(container: Mapping[str, Any], port: object) -> int | None:
    for item in container.get("ports", []):
        if port in (item.get("name"), item["containerPort"]):
            return int(item["containerPort"])
    return None


def _port_problems(here: str, container: Mapping[str, Any], stage: Stage) -> list[str]:
    image_ports = {int(value) for key, value in stage.env.items() if key.endswith("_PORT")}
    exposed = {int(port.split("/")[0]) for port in stage.exposed}
    ports = {int(item["containerPort"]) for item in container.get("ports", [])}
    if not ports or ports != image_ports or ports != exposed:
        listens = f"the image listens on {sorted(image_ports)} (EXPOSE {sorted(exposed)})"
        return [f"{here}: ports {sorted(ports)}, {listens}"]
    return []


def _probe_problems(here: str, container: Mapping[str, Any], paths: set[str]) -> list[str]:
    problems = []
    for kind in ("startupProbe", "readinessProbe", "livenessProbe"):
        probe = container.get(kind)
        if probe is None:
            problems.append(f"{here}: no {kind}")
            continue
        path, port = probe["httpGet"]["path"], probe["httpGet"]["port"]
        if path not in paths:
            problems.append(f"{here}: {kind} path {path} is not a GET route of the app")
        if _container_port(container, port) is None:
            problems.append(f"{here}: {kind} port {port} is not a container port")
    return problems


def _service_problems(manifests: Sequence[Manifest]) -> list[str]:
    problems = []
    deployments = [m for m in manifests if m.kind == "Deployment"]
    services = {m.name: m for m in manifests if m.kind == "Service"}
    for service in services.values():
        selector = service.body["spec"]["selector"]
        chosen = [
            d
            for d in deployments
            if selector.items() <= d.body["spec"]["template"]["metadata"]["labels"].items()
        ]
        if len(chosen) != 1:
            problems.append(f"Service/{service.name} selects {len(chosen)} Deployments")
            continue
        container = pod_spec(chosen[0].body)["containers"][0]
        for port in service.body["spec"]["ports"]:
            if _container_port(container, port["targetPort"]) != port["port"]:
                problems.append(f"Service/{service.name}: port {port['port']} is not its pods' port")
    for config_map in (m for m in manifests if m.kind == "ConfigMap"):
        url = config_map.body.get("data", {}).get("GRADCAM_URL")
        if url:
            parts = urlsplit(url)
            target = services.get(parts.hostname or "")
            ports = [p["port"] for p in target.body["spec"]["ports"]] if target else []
            if parts.port not in ports:
                problems.append(
                    f"ConfigMap/{config_map.name}: GRADCAM_URL {url} is not a Service's host and port"
                )
    return problems
