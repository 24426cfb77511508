"""Shared fixtures: small, real (not constant) scenes built on the fly."""
from __future__ import annotations

import os
from pathlib import Path

# Under pytest-xdist (the README's `pytest -n auto`) the workers share the cores: one BLAS /
# torch thread each (and in the CLI processes they start), read by torch when it is imported.
if os.environ.get("PYTEST_XDIST_WORKER"):
    for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ.setdefault(_var, "1")

import pytest  # noqa: E402

import maxrf_bench as mb  # noqa: E402
from maxrf_bench.testing import toy_scene  # noqa: F401,E402  (re-exported for tests)

SHARED_DATA = Path(os.environ.get("MAXRF_SHARED_DATA", Path(__file__).resolve().parents[1].parent / "shared" / "data"))


@pytest.fixture
def toy_scan():
    return mb.make_scan(**toy_scene(), title="toy", source="tests/conftest.py")


@pytest.fixture
def shared_data():
    if not SHARED_DATA.exists():
        pytest.skip(f"real sample data not present at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture
def one_torch_thread():
    """Small tensors: one torch thread (two threads on a busy 2-core machine run 10× slower);
    the count is restored afterwards. Use with ``pytestmark = pytest.mark.usefixtures(...)``."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
