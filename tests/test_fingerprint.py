"""A cell's code hash sees the method's own code, also behind a shared wrapper."""
from __future__ import annotations

import importlib
import sys
import textwrap

import maxrf_bench as mb
from maxrf_bench.runner import method_fingerprint

DRIVER = '''
import functools

def driver(fn):
    @functools.wraps(fn)
    def run(inputs, **p):
        return fn(inputs, **p)
    return run
'''

ALGO = '''
from shared_driver import driver

@driver
def run(inputs, gain=1.0):
    return inputs.maps_lr * GAIN

GAIN = 1
'''


def test_editing_the_wrapped_module_changes_the_hash(tmp_path, monkeypatch):
    (tmp_path / "shared_driver.py").write_text(textwrap.dedent(DRIVER))
    algo = tmp_path / "algo_fp_toy.py"
    algo.write_text(textwrap.dedent(ALGO))
    monkeypatch.syspath_prepend(str(tmp_path))
    module = importlib.import_module("algo_fp_toy")
    try:
        method = mb.Method("fp-toy", module.run, "a wrapped toy")
        first = method_fingerprint("fp-toy", method)["code_hash"]
        assert first and first == method_fingerprint("fp-toy", method)["code_hash"]
        algo.write_text(textwrap.dedent(ALGO).replace("GAIN = 1", "GAIN = 2"))  # the method changes
        assert method_fingerprint("fp-toy", method)["code_hash"] != first
        algo.write_text(textwrap.dedent(ALGO))
        (tmp_path / "shared_driver.py").write_text(textwrap.dedent(DRIVER) + "\n# edited\n")
        assert method_fingerprint("fp-toy", method)["code_hash"] != first  # and the driver too
    finally:
        sys.modules.pop("algo_fp_toy", None)
        sys.modules.pop("shared_driver", None)
