"""The loaded Keras model and its gradient models (imports TensorFlow: use on the TensorFlow thread)."""

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from cxr.model_card import ModelCard
from service.sidecar.gradcam import GradientModel, build_gradient_model, grad_cam

logger = logging.getLogger(__name__)

MAX_CACHED_LAYERS = 4  # gradient models for layers other than the card's; each is traced on first use


@dataclass(frozen=True)
class Explanation:
    layer: str
    heatmap_shape: tuple[int, int]
    heatmaps: dict[str, np.ndarray]  # label -> (h, w) float32 in [0, 1]
    seconds: float


class Explainer:
    """Grad-CAM of one model at the card's last conv layer, or at another layer on request."""

    def __init__(self, card: ModelCard, model: keras.Model) -> None:
        self.card = card
        self._model = model
        self._default = build_gradient_model(model, card.last_conv_layer)
        self._other_layers: dict[str, GradientModel] = {}

    @classmethod
    def load(
        cls, card: ModelCard, weights: Path, intra_op_threads: int, inter_op_threads: int
    ) -> "Explainer":
        """Load the verified weights, build the default gradient model and trace it once."""
        started = time.perf_counter()
        tf.config.threading.set_intra_op_parallelism_threads(intra_op_threads)
        tf.config.threading.set_inter_op_parallelism_threads(inter_op_threads)
        explainer = cls(card, keras.models.load_model(weights, compile=False))
        size = card.input_size
        explainer.explain(
            np.zeros((size, size, 3), np.float32), {label: i for i, label in enumerate(card.labels)}
        )
        logger.info("model %s %s ready in %.1f s", card.name, card.version, time.perf_counter() - started)
        return explainer

    def gradient_model(self, layer: str | None) -> GradientModel:
        if layer is None or layer == self._default.layer:
            return self._default
        if layer not in self._other_layers:
            if len(self._other_layers) >= MAX_CACHED_LAYERS:
                self._other_layers.pop(next(iter(self._other_layers)))
            self._other_layers[layer] = build_gradient_model(self._model, layer)
        return self._other_layers[layer]

    def explain(
        self, tensor: np.ndarray, label_indices: dict[str, int], layer: str | None = None
    ) -> Explanation:
        """Grad-CAM maps of one preprocessed input for each label -> output index given."""
        started = time.perf_counter()
        gradient_model = self.gradient_model(layer)
        maps = grad_cam(gradient_model, tensor, list(label_indices.values()))
        return Explanation(
            layer=gradient_model.layer,
            heatmap_shape=gradient_model.heatmap_shape,
            heatmaps=dict(zip(label_indices, maps, strict=True)),
            seconds=time.perf_counter() - started,
        )
