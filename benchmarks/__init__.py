"""Benchmarks and the load test of repgeom: tooling beside the package, not part of it.

``python -m benchmarks.bench`` times the engine against the notebook pipeline, the
machine and the production server; ``python -m benchmarks.loadtest`` runs locust's
simulated visitors against gunicorn on loopback. Their extra requirements are in
``benchmarks/requirements.txt``; :mod:`benchmarks.dash_wire` is the one Dash client the
tests, the benchmark and the locustfile share.
"""
