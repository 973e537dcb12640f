"""The API process's one settings class, read from environment variables; bad values fail fast.

Each field is read from the environment variable of the same name in upper case (`API_PORT`,
`MODEL_DIR`, ...). `Settings.from_environ(mapping)` reads from any mapping, so tests never touch
`os.environ`; `get_settings()` reads the process environment once.
"""

import os
import re
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
from pydantic_settings.sources import EnvSettingsSource
from pydantic_settings.sources.utils import parse_env_vars

from cxr.imaging import DEFAULT_MAX_PIXELS

LOOPBACK = "127.0.0.1"
MIN_API_KEY_LENGTH = 8
# Values copied from examples rather than generated: refused so a deployment cannot ship them.
PLACEHOLDER_KEYS = frozenset(
    {"changeme", "change-me", "changethis", "password", "secret", "apikey", "api-key"}
)
_KEY_CHARACTERS = re.compile(r"^[\x21-\x7e]+$")  # printable ASCII without spaces: safe in a header
_ORIGIN = re.compile(r"^https?://[A-Za-z0-9.-]+(:\d{1,5})?$")


def usable_cpus() -> int:
    """CPUs this process may run on (the container's share, not the host's count): its CPU
    affinity, lowered to a cgroup v2 CPU quota (`cpus:` in compose, a Kubernetes CPU limit)."""
    try:
        count = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1
    quota = _cgroup_cpu_quota(Path("/sys/fs/cgroup/cpu.max"))
    return max(1, min(count, quota)) if quota is not None else count


def _cgroup_cpu_quota(path: Path) -> int | None:
    """CPUs allowed by a cgroup v2 cpu.max file ("QUOTA PERIOD", or "max PERIOD"), rounded up."""
    try:
        quota, period = path.read_text().split()[:2]
        return None if quota == "max" else -(-int(quota) // int(period))
    except (OSError, ValueError):
        return None


def _split_commas(value: Any) -> Any:
    if isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    return value


class Settings(BaseSettings):
    """Every knob of the API process. Field `x_y` is environment variable `X_Y`."""

    model_config = SettingsConfigDict(case_sensitive=False, extra="ignore", frozen=True)

    api_host: str = Field(default=LOOPBACK, min_length=1, description="Interface to bind.")
    api_port: int = Field(default=8000, ge=1, le=65535)
    gradcam_port: int = Field(default=8001, ge=1, le=65535)
    gradcam_url: str | None = Field(default=None, description="Default http://127.0.0.1:$GRADCAM_PORT.")
    gradcam_timeout_seconds: float = Field(default=10.0, gt=0, le=300)
    gradcam_failure_threshold: int = Field(
        default=3, ge=1, description="Consecutive sidecar failures that open the circuit breaker."
    )
    gradcam_retry_seconds: float = Field(
        default=15.0, gt=0, description="How long an open breaker skips the sidecar before one trial call."
    )
    heatmap_fallback: Literal["cam", "none"] = "cam"
    heatmap_max_size: int = Field(
        default=1024, ge=64, le=1024, description="Largest heatmap_size a client may ask for."
    )
    api_keys: Annotated[list[SecretStr], NoDecode] = Field(default_factory=list)
    model_dir: Path = Path("models/chexnet-densenet121")
    onnx_dir: Path = Path("build")
    max_body_bytes: int = Field(default=20 * 1024 * 1024, ge=1024)
    max_pixels: int = Field(default=DEFAULT_MAX_PIXELS, ge=32 * 32)
    ort_intra_op_threads: int = Field(default_factory=usable_cpus, ge=1, le=256)
    ort_inter_op_threads: int = Field(default=1, ge=1, le=256)
    ort_threads_under_load: int = Field(
        default=1,
        ge=0,
        le=256,
        description="Intra-op threads of an inference that runs while other requests are in flight "
        "(a second session, no spinning); 0: always ORT_INTRA_OP_THREADS.",
    )
    ort_allow_spinning: bool = Field(
        # On: a request alone answers about 4 ms sooner with the int8 model (README: Performance).
        # Only the session of a request alone spins, and only within a run.
        default=True,
        description="onnxruntime's pool threads busy-wait between the parallel sections of a run of a "
        "request alone, never after it, never under load (README: Performance).",
    )
    model_precision: Literal["fp32", "int8"] = Field(
        # int8 by the policy of README: Performance (AUROC change and speed-up, both measured).
        default="int8",
        description="int8 serves the export's model.int8.onnx, checked against its manifest's sha256; "
        "fp32 the model.onnx it was quantised from.",
    )
    max_concurrent_inferences: int = Field(
        # One per core: one more measured no faster at c=8 and slower at p95 (README: Performance).
        default_factory=usable_cpus,
        ge=1,
        le=256,
        description="Predictions running at once (default: the usable cores); under load each runs "
        "onnxruntime on one thread (ORT_THREADS_UNDER_LOAD=1).",
    )
    max_queued_requests: int = Field(default=16, ge=0, le=10_000)
    ood_mode: Literal["warn", "refuse"] = "warn"
    jpeg_reduced_decode: bool = Field(
        default=True,
        description="Decode a large JPEG at 1/2-1/8 scale, never below what the guard, the model and "
        "the heatmap need (README: Performance).",
    )
    cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)
    log_format: Literal["json", "text"] = "json"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    request_timeout_seconds: float = Field(default=60.0, gt=0, le=3600)

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> "Settings":
        """Settings from `environ` (a plain dict in tests, os.environ in production)."""
        return cls(_build_sources=((_MappingEnvSource(cls, environ),), {}))  # type: ignore[call-arg]

    @field_validator("api_keys", "cors_origins", mode="before")
    @classmethod
    def _comma_list(cls, value: Any) -> Any:
        return _split_commas(value)

    @field_validator("api_keys")
    @classmethod
    def _usable_keys(cls, keys: list[SecretStr]) -> list[SecretStr]:
        for position, key in enumerate(keys, start=1):
            secret = key.get_secret_value()
            # The message names the key's position, never its value.
            if not _KEY_CHARACTERS.match(secret):
                raise ValueError(f"key {position} must be printable ASCII without spaces or commas")
            if len(secret) < MIN_API_KEY_LENGTH:
                raise ValueError(f"key {position} is shorter than {MIN_API_KEY_LENGTH} characters")
            if secret.lower() in PLACEHOLDER_KEYS:
                raise ValueError(f"key {position} is a placeholder; generate a random key")
        return keys

    @field_validator("cors_origins")
    @classmethod
    def _origins(cls, origins: list[str]) -> list[str]:
        for origin in origins:
            if origin != "*" and not _ORIGIN.match(origin):
                raise ValueError(f"{origin!r} is not an origin like https://host[:port] (no path)")
        return origins

    @field_validator("gradcam_url")
    @classmethod
    def _http_url(cls, url: str | None) -> str | None:
        if url is None or not url.strip():
            return None
        url = url.strip().rstrip("/")
        if not re.match(r"^https?://[^/\s]+(/\S*)?$", url):
            raise ValueError(f"{url!r} is not an http(s) URL")
        return url

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value

    @property
    def auth_enabled(self) -> bool:
        return bool(self.api_keys)

    @property
    def bind_host(self) -> str:
        """API_HOST, except loopback when no API key is set: then only this machine may call."""
        return self.api_host if self.auth_enabled else LOOPBACK

    @property
    def host_forced_to_loopback(self) -> bool:
        return self.bind_host != self.api_host

    @property
    def sidecar_url(self) -> str:
        return self.gradcam_url or f"http://{LOOPBACK}:{self.gradcam_port}"


class _MappingEnvSource(EnvSettingsSource):
    """pydantic-settings' environment source over any mapping instead of os.environ."""

    def __init__(self, settings_cls: type[BaseSettings], environ: Mapping[str, str]) -> None:
        self._environ = dict(environ)
        super().__init__(settings_cls)

    def _load_env_vars(self) -> Mapping[str, str | None]:
        return parse_env_vars(
            self._environ, self.case_sensitive, self.env_ignore_empty, self.env_parse_none_str
        )


@lru_cache
def get_settings() -> Settings:
    """The process's settings (read once); apps built by create_app override this dependency."""
    return Settings.from_environ(os.environ)
