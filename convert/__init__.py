"""Conversion stage: Keras model -> float32 / int8 `.tflite`, gated on accuracy, with a manifest."""
