"""The grid's makespan (issue 26 item 6): the longest cells first on a cluster, and every
dataset prepared once per protocol point, shared by every method and seed."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np

import maxrf_bench as mb
import maxrf_bench.prepare as prepare
from maxrf_bench.cells import CellResult
from maxrf_bench.scheduler import REFERENCE_SIZE, expected_cost, longest_first, recorded_rates
from maxrf_bench.testing import registered_plugin, toy_scene


def fake_prep(name: str, side: int, n_el: int = 21):
    return SimpleNamespace(name=name, rgb=SimpleNamespace(sizes={"y": side, "x": side}),
                           elements=[f"E{i}" for i in range(n_el)])


def fake_unit(label: str, cost=None, params=None):
    return SimpleNamespace(run_label=label, method=SimpleNamespace(cost=cost), params=params or {})


def test_longest_first_by_hint_size_and_recorded_time():
    big, small = fake_prep("big", 512), fake_prep("small", 256)
    slow = fake_unit("slow", cost=300.0)
    fast = fake_unit("fast")                      # no hint: DEFAULT_COST
    ctx = fake_unit("ctx", cost=lambda p: 188.0 if p["kernel"] > 1 else 122.0, params={"kernel": 5})
    cells = [(small, fast, 0), (small, slow, 0), (big, fast, 0), (big, ctx, 0), (big, slow, 0),
             (big, slow, 1)]
    assert expected_cost(big, slow) == 300.0
    assert expected_cost(small, slow) == 75.0     # a quarter of the pixels
    assert expected_cost(big, ctx) == 188.0
    order = longest_first(cells, list(range(len(cells))))
    # slow on big (two seeds, grid order kept among equals), ctx on big, slow on small, fast
    assert order == [4, 5, 3, 1, 2, 0]
    # a recorded time of a finished cell wins over the hint: 'fast' measured at 1000 s
    done = {2: CellResult("big", "fast", {}, 1000.0, seed=0)}
    rates = recorded_rates(cells, done)
    assert rates == {"fast": 1000.0}
    assert longest_first(cells, [0, 1, 3, 4], rates) == [4, 0, 3, 1]
    # failed cells do not count as a measurement
    assert recorded_rates(cells, {2: CellResult("big", "fast", {}, 5.0, error="x", seed=0)}) == {}
    assert REFERENCE_SIZE == 512 * 512 * 21


def test_builtin_hints_put_the_slow_baselines_first():
    costs = {name: mb.get_method(name).cost for name in ("ssgnet", "mmsr", "ssr", "bicubic")}
    assert costs["bicubic"] is None
    assert costs["ssgnet"] > costs["mmsr"] > costs["ssr"] > 50
    proposed = mb.get_method("proposed")
    assert proposed.cost(proposed.params("ctx")) > proposed.cost(proposed.params("fast"))
    # every built-in iterative baseline has one (cstf, 222 s at 512², had none and ran last)
    for name in ("cstf", "cms", "lttr", "cs2dips", "ssrcu"):
        assert mb.get_method(name).cost > 50, name
    assert mb.get_method("cstf").cost > mb.get_method("cs2dips").cost


class _Noisy:
    """A seed-dependent toy method, so a grid has several seeds per method."""

    @mb.hookimpl
    def maxrf_bench_register_methods(self, register):
        def run(inputs: mb.MethodInputs):
            up = mb.upsample(inputs.maps_lr.values, inputs.operator.scale, "bilinear")
            return up + 1e-3 * np.random.default_rng(inputs.seed).standard_normal(up.shape)

        register(mb.Method("noisy", run, "bilinear plus seeded noise (tests)", uses_rgb=False))


def test_each_dataset_prepared_once_per_protocol_point(tmp_path, monkeypatch):
    scan = mb.save_scan(mb.make_scan(**toy_scene(64, seed=3), title="toy"), tmp_path / "toy.zarr")
    calls = {"prepare_scan": 0, "reduce_resolution": 0, "open_scan": 0}

    def counting(name):
        real = getattr(prepare, name)

        def wrapper(*a, **k):
            calls[name] += 1
            return real(*a, **k)
        return wrapper
    for name in calls:
        monkeypatch.setattr(prepare, name, counting(name))
    with registered_plugin(_Noisy(), "noisy-test"):
        res = mb.run_grid(["bicubic", "noisy"], [str(scan)], out=tmp_path / "run",
                          seeds=[0, 1, 2], protocols=["full", "reduced"])
    # 2 protocol points × (bicubic once + noisy × 3 seeds) = 8 cells, one preparation each point
    assert calls == {"prepare_scan": 1, "reduce_resolution": 1, "open_scan": 1}
    assert len(list((tmp_path / "run").rglob("cell.json"))) == 8
    assert res is not None
