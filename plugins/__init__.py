"""Built-in plugins of maxrf-bench: the metrics, the proposed method and the baselines.

Each module is registered through the ``maxrf_bench`` entry-point group exactly as a third
party's plugin would be, and uses only the public API of :mod:`maxrf_bench`.
"""
