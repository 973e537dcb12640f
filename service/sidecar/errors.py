"""What can go wrong with a Grad-CAM request; service.sidecar.problems maps each to a status."""


class BadTensorError(ValueError):
    """The input tensor is not finite float32 data of the model's input shape (-> 400)."""


class UnknownLabelError(ValueError):
    """A label the model does not predict (-> 422)."""


class TooManyLabelsError(ValueError):
    """More labels in one request than the sidecar allows (-> 422)."""


class UnknownLayerError(ValueError):
    """A layer name that is not in the model, or whose output is not a spatial feature map (-> 422)."""

    def __init__(self, name: str, reason: str) -> None:
        super().__init__(f"cannot explain at layer {name!r}: {reason}")
        self.name = name


class NotReadyError(RuntimeError):
    """The model is still loading, or failed to load (-> 503)."""


class BusyError(RuntimeError):
    """Too many requests are already running or waiting for TensorFlow (-> 503)."""
