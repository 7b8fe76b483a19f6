"""The ensemble: a Bayesian vote of the agents (vote.py, numpy only, shared with the executor)
and its fit on the walk-forward's validation windows (fit.py, training side)."""
