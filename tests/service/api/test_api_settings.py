"""Settings from environment variables: defaults, parsing, fail-fast validation."""

import os
from pathlib import Path

import pytest
from pydantic import ValidationError

from service.api.settings import LOOPBACK, Settings


def test_defaults() -> None:
    settings = Settings.from_environ({})
    assert settings.api_host == LOOPBACK and settings.api_port == 8000
    assert settings.gradcam_port == 8001 and settings.sidecar_url == "http://127.0.0.1:8001"
    assert settings.model_dir == Path("models/chexnet-densenet121") and settings.onnx_dir == Path("build")
    assert settings.max_body_bytes == 20 * 1024 * 1024
    assert (
        settings.heatmap_fallback == "cam" and settings.ood_mode == "warn" and settings.log_format == "json"
    )
    assert settings.api_keys == [] and not settings.auth_enabled and settings.cors_origins == []
    assert settings.ort_intra_op_threads == len(os.sched_getaffinity(0))
    assert settings.ort_inter_op_threads == 1
    assert settings.max_concurrent_inferences == len(os.sched_getaffinity(0))


def test_every_variable_is_read() -> None:
    settings = Settings.from_environ(
        {
            "API_HOST": "0.0.0.0",
            "API_PORT": "9000",
            "GRADCAM_PORT": "9001",
            "GRADCAM_TIMEOUT_SECONDS": "2.5",
            "HEATMAP_FALLBACK": "none",
            "API_KEYS": " first-key-123 ,second-key-456,",
            "MODEL_DIR": "/m",
            "ONNX_DIR": "/o",
            "MAX_BODY_BYTES": "1048576",
            "MAX_PIXELS": "1000000",
            "ORT_INTRA_OP_THREADS": "3",
            "ORT_INTER_OP_THREADS": "2",
            "MAX_CONCURRENT_INFERENCES": "4",
            "MAX_QUEUED_REQUESTS": "0",
            "OOD_MODE": "refuse",
            "CORS_ORIGINS": "https://pacs.example.org,http://localhost:3000",
            "LOG_FORMAT": "text",
            "REQUEST_TIMEOUT_SECONDS": "12",
            "HEATMAP_MAX_SIZE": "512",
            "LOG_LEVEL": "debug",
        }
    )
    assert (settings.api_host, settings.api_port, settings.sidecar_url) == (
        "0.0.0.0",
        9000,
        "http://127.0.0.1:9001",
    )
    assert settings.gradcam_timeout_seconds == 2.5 and settings.heatmap_fallback == "none"
    assert [key.get_secret_value() for key in settings.api_keys] == ["first-key-123", "second-key-456"]
    assert (settings.model_dir, settings.onnx_dir) == (Path("/m"), Path("/o"))
    assert (settings.max_body_bytes, settings.max_pixels) == (1048576, 1000000)
    assert (settings.ort_intra_op_threads, settings.ort_inter_op_threads) == (3, 2)
    assert (settings.max_concurrent_inferences, settings.max_queued_requests) == (4, 0)
    assert settings.ood_mode == "refuse" and settings.log_format == "text" and settings.log_level == "DEBUG"
    assert settings.cors_origins == ["https://pacs.example.org", "http://localhost:3000"]
    assert settings.request_timeout_seconds == 12 and settings.heatmap_max_size == 512
    assert settings.bind_host == "0.0.0.0" and not settings.host_forced_to_loopback


def test_gradcam_url_wins_over_port() -> None:
    settings = Settings.from_environ({"GRADCAM_URL": "http://gradcam:8001/", "GRADCAM_PORT": "9999"})
    assert settings.sidecar_url == "http://gradcam:8001"


def test_without_keys_the_server_binds_loopback_only() -> None:
    settings = Settings.from_environ({"API_HOST": "0.0.0.0"})
    assert settings.bind_host == LOOPBACK and settings.host_forced_to_loopback


def test_keys_are_secret_in_repr() -> None:
    settings = Settings.from_environ({"API_KEYS": "a-secret-key-1"})
    assert "a-secret-key-1" not in repr(settings) and "a-secret-key-1" not in str(settings.model_dump())


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("API_PORT", "http"),
        ("API_PORT", "0"),
        ("API_PORT", "70000"),
        ("GRADCAM_PORT", "-1"),
        ("GRADCAM_URL", "gradcam:8001"),
        ("GRADCAM_URL", "ftp://gradcam"),
        ("GRADCAM_TIMEOUT_SECONDS", "0"),
        ("HEATMAP_FALLBACK", "gradcam"),
        ("API_KEYS", "short"),
        ("API_KEYS", "changeme"),
        ("API_KEYS", "good-key-123,has space1"),
        ("MAX_BODY_BYTES", "10"),
        ("MAX_PIXELS", "-5"),
        ("ORT_INTRA_OP_THREADS", "0"),
        ("ORT_INTER_OP_THREADS", "many"),
        ("MAX_CONCURRENT_INFERENCES", "0"),
        ("MAX_QUEUED_REQUESTS", "-1"),
        ("OOD_MODE", "ignore"),
        ("CORS_ORIGINS", "https://example.org/path"),
        ("CORS_ORIGINS", "example.org"),
        ("LOG_FORMAT", "xml"),
        ("REQUEST_TIMEOUT_SECONDS", "-3"),
        ("HEATMAP_MAX_SIZE", "4096"),
        ("MODEL_PRECISION", "fp16"),
        ("ORT_THREADS_UNDER_LOAD", "-1"),
        ("ORT_ALLOW_SPINNING", "sometimes"),
    ],
)
def test_bad_values_fail_fast(variable: str, value: str) -> None:
    with pytest.raises(ValidationError) as raised:
        Settings.from_environ({variable: value})
    assert raised.value.errors()[0]["loc"][0] == variable.lower()


def test_key_errors_name_the_position_not_the_key() -> None:
    with pytest.raises(ValidationError) as raised:
        Settings.from_environ({"API_KEYS": "fine-key-123,changeme"})
    messages = " ".join(error["msg"] for error in raised.value.errors(include_input=False))
    assert "key 2" in messages and "changeme" not in messages


def test_settings_are_immutable() -> None:
    settings = Settings.from_environ({})
    with pytest.raises(ValidationError):
        settings.api_port = 1


@pytest.mark.parametrize(
    ("content", "expected"),
    [("max 100000", None), ("200000 100000", 2), ("150000 100000", 2), ("50000 100000", 1), ("", None)],
)
def test_a_cgroup_cpu_quota_counts_as_cpus(tmp_path: Path, content: str, expected: int | None) -> None:
    from service.api.settings import _cgroup_cpu_quota

    path = tmp_path / "cpu.max"
    path.write_text(content)
    assert _cgroup_cpu_quota(path) == expected
    assert _cgroup_cpu_quota(tmp_path / "missing") is None
