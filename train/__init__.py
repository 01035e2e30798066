"""Training stage: MNIST (found, fetched, verified) and the models trained on it.

`train.mnist` needs only numpy and the standard library; TensorFlow is imported by the modules that
train, never at package import.
"""
