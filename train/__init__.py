"""Training stage: the models trained on MNIST (found and verified by `digitdata.mnist`): the digit classifier
and its comparison models, and the reader's region finder and number recognizer trained on the data engine's
MNIST-training-digit scenes and lines; their reports and the hyperparameter search. TensorFlow is imported by
the modules that train, never at package import.
"""
