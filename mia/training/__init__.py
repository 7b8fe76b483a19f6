"""Training layer: walk-forward splits (purge + embargo), fold training, MLflow logging.

:mod:`mia.training.splits` is pure numpy and is shared by feature selection
(:mod:`mia.selection`) and the agents' walk-forward training.
"""
