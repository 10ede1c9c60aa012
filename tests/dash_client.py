"""The Dash test client: :mod:`benchmarks.dash_wire`, shared with the benchmark and the load test."""

from benchmarks.dash_wire import DashClient, decode

__all__ = ["DashClient", "decode"]
