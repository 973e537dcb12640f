"""The sidecar's one settings class, read from environment variables."""

from functools import lru_cache
from pathlib import Path

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from cxr.model_card import MODEL_CARD_FILE


class Settings(BaseSettings):
    """GRADCAM_HOST, GRADCAM_PORT, MODEL_DIR, TF_INTRA_OP_THREADS, TF_INTER_OP_THREADS,
    MAX_LABELS_PER_REQUEST, MAX_PENDING_REQUESTS, LOG_LEVEL."""

    model_config = SettingsConfigDict(frozen=True, protected_namespaces=())

    gradcam_host: str = "127.0.0.1"
    gradcam_port: int = Field(default=8001, ge=1, le=65535)
    model_dir: Path = Path("models/chexnet-densenet121")
    tf_intra_op_threads: int = Field(default=2, ge=1, description="Threads inside one TensorFlow op.")
    tf_inter_op_threads: int = Field(default=1, ge=1, description="TensorFlow ops run side by side.")
    max_labels_per_request: int = Field(default=14, ge=1, le=14)
    max_pending_requests: int = Field(
        default=4, ge=1, description="Requests running or waiting for TensorFlow; more are answered 503."
    )
    log_level: str = Field(default="info", pattern="^(critical|error|warning|info|debug)$")

    @field_validator("model_dir")
    @classmethod
    def _model_dir_has_card(cls, model_dir: Path) -> Path:
        if not (model_dir / MODEL_CARD_FILE).is_file():
            raise ValueError(f"{model_dir} has no {MODEL_CARD_FILE}")
        return model_dir


@lru_cache
def get_settings() -> Settings:
    return Settings()
