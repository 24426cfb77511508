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


def readme_methods_row(name: str) -> str:
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    rows = [ln for ln in readme.splitlines() if ln.startswith(f"| `{name}` |")]
    assert len(rows) == 1, f"README's methods table has {len(rows)} rows for {name}"
    return rows[0]


@pytest.mark.parametrize("name", sorted(n for n, repo in REFERENCE_CODE.items() if repo))
def test_readme_table_shows_the_same_delta_as_info(name):
    """The README's methods table and ``maxrf-bench info`` quote the same measured Δ."""
    deltas = re.findall(r"Δ = [+−-]?\d+\.\d+ dB on [\w-]+", mb.get_method(name).reference)
    row = readme_methods_row(name)
    for delta in deltas:
        assert delta in row, f"{name}: info says {delta!r}, README's row says {row!r}"
    if not deltas:  # no Δ (cs2dips: network compared, not the loop): the row says so too
        assert "identical" in row and "identical" in mb.get_method(name).reference
