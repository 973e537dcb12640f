"""Keras -> ONNX export: two-output graph, CAM head weights, parity proof on real images, int8 option.

The API process reads only what this package writes (model.onnx, head.npz, manifest.json, see
cxr/onnx_manifest.py); it never imports TensorFlow.
"""
