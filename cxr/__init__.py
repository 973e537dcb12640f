"""What training, export, the API and the Grad-CAM sidecar share: labels, image decoding,
preprocessing and the model card. Imports neither TensorFlow nor FastAPI."""
