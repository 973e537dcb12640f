"""The Grad-CAM sidecar: a TensorFlow process that explains the model's logits on request.

The API (onnxruntime, no TensorFlow) sends it a preprocessed input tensor; it answers with one
normalised heatmap per requested label (see service.gradcam_protocol).
"""
