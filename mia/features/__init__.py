"""Features: one compiled op machine for batch and online (docs/features.md).

``registry`` names ~350 features, ``spec`` orders and hashes a selection, ``batch`` builds them
over history and ``online`` advances them bar by bar with the same kernels.
"""
