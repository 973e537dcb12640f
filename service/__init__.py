"""The inference service: the API process (`service.api`, onnxruntime) and the Grad-CAM sidecar
(`service.sidecar`, TensorFlow), two processes that speak `service.gradcam_protocol` over HTTP."""
