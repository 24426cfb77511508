"""Every baseline says, after its citation in ``Method.reference`` (``maxrf-bench info``),
how it was checked against its authors' code; figures in docs/baselines.md, produced by
tests/benchmarks/bench_reference.py."""
import re

import pytest

import maxrf_bench as mb

#: baseline → the repository its evidence must name ("" = no public code)
REFERENCE_CODE = {
    "mmsr": "palmdong/MMSR",
    "ssgnet": "jsshin98/SSGNet",
    "cs2dips": "Ambitionfy/CS2DIPs",
    "cstf": "magamig/hif-benchmarking",
    "cms": "magamig/hif-benchmarking",
    "lttr": "magamig/hif-benchmarking",
    "ssr": "",
    "ssrcu": "",
}


@pytest.mark.parametrize("name", sorted(REFERENCE_CODE))
def test_baseline_states_its_evidence(name):
    evidence = mb.get_method(name).reference
    repo = REFERENCE_CODE[name]
    if repo:
        assert repo in evidence, evidence
        assert re.search(r"@[0-9a-f]{7,40}\b", evidence), f"{name}: no commit in {evidence!r}"
    else:
        assert "reconstruction: no public code" in evidence, evidence
    assert "docs/baselines.md" in evidence or "bench_reference.py" in evidence
