"""`make bench`: the service against a naive Keras baseline and bare onnxruntime (see __main__)."""
