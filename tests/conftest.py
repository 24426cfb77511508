"""Shared fixtures: small, real (not constant) scenes built on the fly."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

import maxrf_bench as mb
from maxrf_bench.testing import toy_scene  # noqa: F401  (re-exported for tests)

SHARED_DATA = Path(os.environ.get("MAXRF_SHARED_DATA", Path(__file__).resolve().parents[1].parent / "shared" / "data"))


@pytest.fixture
def toy_scan():
    return mb.make_scan(**toy_scene(), title="toy", source="tests/conftest.py")


@pytest.fixture
def shared_data():
    if not SHARED_DATA.exists():
        pytest.skip(f"real sample data not present at {SHARED_DATA}")
    return SHARED_DATA
