"""MIA: an MLOps platform for reinforcement-learning trading of CME equity-index futures.

Importing :mod:`mia` stays cheap: no torch, mlflow or airflow at import time (a test holds this).
"""

__version__ = "0.1.0"
