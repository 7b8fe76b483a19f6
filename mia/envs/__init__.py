"""Trading environments and the shared cost model (docs in each module).

:mod:`mia.envs.costs` (fills and transaction costs) and :mod:`mia.envs.market` (the env's input
record and the per-bar accounting) are pure numpy, shared with :mod:`mia.backtest` and the live
executor's paper broker. :mod:`mia.envs.trading_env` (gymnasium) and :mod:`mia.envs.vec_env`
(stable-baselines3) are imported only by training code. This package imports nothing heavy.
"""
