"""Training, evaluation and weight import for the DenseNet121 ChestX-ray14 model (TensorFlow/Keras)."""
