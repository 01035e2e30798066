"""Edge stage: reads handwritten numbers from camera frames with LiteRT. Never imports TensorFlow."""
