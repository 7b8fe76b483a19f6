"""One module per stage. DAG tasks and ``dvc.yaml`` stages call ``<stage>.run(...)`` only.

Each stage is also runnable as ``python -m mia.pipelines.<stage>``.
"""
