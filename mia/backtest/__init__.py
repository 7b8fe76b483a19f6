"""Backtest: the position simulator, the baselines and the metrics (no heavy imports here)."""
