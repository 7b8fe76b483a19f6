"""Registry: the policy bundle, its ONNX export, the MLflow model, aliases and the promotion gate.

This package imports nothing at package import (no onnx, onnxruntime, torch or mlflow), so any
of its modules can be imported alone at its own cost:

- :mod:`mia.registry.bundle` (the format, read and verified) and :mod:`mia.registry.policy`
  (runs it with onnxruntime): numpy, onnxruntime and :mod:`mia.features` only, the live
  executor imports them; an import-linter contract holds them to that.
  :mod:`mia.registry.bundle_writer` writes a bundle (training side).
- :mod:`mia.registry.onnx_export`: SB3 / torch policies to ONNX, and the fused graph
  (training side: torch, SB3, onnx).
- :mod:`mia.registry.pyfunc`: the bundle as an MLflow pyfunc model (``mlflow models predict``).

The format is described in ``docs/bundle.md``.
"""
