"""Training stage: the models trained on MNIST (found and verified by `digitdata.mnist`), their reports and
the hyperparameter search. TensorFlow is imported by the modules that train, never at package import.
"""
