"""ONNX export of the proposed generator and the torch-free runtime ``maxrf_infer``.

A generator with random (not trained) weights stands in for a trained one: export and
inference do not care how the weights were found, and training would cost minutes.
"""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from click.testing import CliRunner

import maxrf_bench as mb
import maxrf_infer
import maxrf_infer.cli
from maxrf_bench_plugins import onnx_commands
from maxrf_bench_plugins.proposed import onnx_export
from maxrf_bench_plugins.proposed.model import Generator, save_generator

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

ELEMENTS = ["Pb_L", "Hg_L", "Cu_K", "Ca_K"]
SCALE = 4


def random_generator(n_elements: int, seed: int = 0, **config) -> Generator:
    """A generator whose output is far from constant (random λ, larger weights)."""
    torch.manual_seed(seed)
    g = Generator(n_elements, **config)
    with torch.no_grad():
        for p in g.parameters():
            p.mul_(1.5)
        for lam in g.lam:
            lam.normal_(0, 0.3)
        if g.lam_synthesis is not None:
            g.lam_synthesis.normal_(0, 0.3)
        if hasattr(g, "input_offset"):  # the input standardisation fitted before training
            g.input_offset.uniform_(0.2, 0.6)
            g.input_scale.uniform_(0.1, 0.3)
    return g.eval()


def make_lr_scan(h_lr: int, w_lr: int, elements=ELEMENTS, scale=SCALE, seed=1):
    """A measured scan (``maps_lr`` in counts + ``rgb``), smooth with a few sharp edges."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h_lr * scale, 0:w_lr * scale] / (scale * max(h_lr, w_lr))
    rgb = np.stack([0.5 + 0.4 * np.sin(7 * xx + k) * np.cos(5 * yy - k) for k in range(3)])
    rgb = np.clip(rgb + 0.2 * (xx > 0.4) + 0.02 * rng.standard_normal(rgb.shape), 0, 1)
    maps = np.stack([50 * (1 + np.sin(3 * (k + 1) * xx) * np.cos(4 * yy)) + 30 * (yy > 0.3 + 0.1 * k)
                     for k in range(len(elements))])
    maps_lr = mb.block_mean(maps, scale) + rng.random((len(elements), h_lr, w_lr))
    return mb.make_scan(rgb=rgb.astype(np.float32), maps_lr=maps_lr.astype(np.float32),
                        elements=elements, title="export test scan")


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    """A finished 'proposed' cell (cell.json + work/generator.*), as `maxrf-bench run` leaves it."""
    root = tmp_path_factory.mktemp("run")
    cell = root / "cells" / "toy" / "proposed" / "seed-0"  # the runner's layout of one seed's run
    work = cell / "work"
    work.mkdir(parents=True)
    g = random_generator(len(ELEMENTS))
    op = mb.BlockMean(SCALE)
    params = {"projection": True, "activation": "sigmoid", "synthesis": "sigmoid"}
    save_generator(g, work, {"elements": ELEMENTS, "scale": SCALE, "operator": op.to_dict(),
                             "params": params, "projection": True})
    offset, span = [1.0, 2.0, 0.5, 3.0], [120.0, 90.0, 150.0, 60.0]
    (cell / "cell.json").write_text(json.dumps({
        "key": "abc", "dataset": "toy", "dataset_source": "toy.zarr", "method": "proposed",
        "params": params, "preset": "fast", "seed": 0, "scale": SCALE, "operator": op.to_dict(),
        "elements": ELEMENTS, "normalisation": {"offset": offset, "span": span}, "metrics": {}}))
    model = onnx_commands.export_model(root, root / "model.onnx", dataset="toy")
    return {"root": root, "model": model, "generator": g, "offset": np.array(offset, np.float32),
            "span": np.array(span, np.float32), "operator": op}


def session(path):
    return maxrf_infer.create_session(path, "cpu")[0]


# --- export ---------------------------------------------------------------------------

def test_export_is_one_checked_file_with_metadata(trained_run):
    path = trained_run["model"]
    assert sorted(p.name for p in path.parent.iterdir() if p.name.startswith("model")) == ["model.onnx"]
    model = onnx.load(path)
    onnx.checker.check_model(model, full_check=True)
    assert model.ir_version <= 10  # read by onnxruntime ≥ 1.16
    assert all(t.data_location != onnx.TensorProto.EXTERNAL for t in model.graph.initializer)
    props = {p.key: p.value for p in model.metadata_props}
    assert json.loads(props["elements"]) == ELEMENTS
    assert json.loads(props["scale"]) == SCALE
    assert json.loads(props["operator"]) == {"name": "blockmean", "scale": SCALE}
    assert json.loads(props["normalisation"])["span"] == [120.0, 90.0, 150.0, 60.0]
    assert props["painting"] == "toy" and props["preset"] == "fast"
    assert props["toolkit_version"] == mb.__version__
    assert json.loads(props["opset"]) == onnx_export.OPSET
    assert props["network"].startswith("FusedLista")  # the fused form reproduced the generator
    ops = [n.op_type for n in model.graph.node]
    # the whole Fig. 1(a) pipeline: upsampling, network, projection (block mean, nearest up)
    assert ops.count("Resize") == 2 and "AveragePool" in ops and ops.count("Conv") == 10
    modes = {a.s.decode() for n in model.graph.node if n.op_type == "Resize" for a in n.attribute
             if a.name == "coordinate_transformation_mode"}
    assert modes & {"half_pixel", "pytorch_half_pixel"}
    dims = [d.dim_param or d.dim_value for d in model.graph.input[1].type.tensor_type.shape.dim]
    assert dims[2:] == ["height", "width"]


@pytest.mark.parametrize("h,w", [(9, 13), (1, 6)])
def test_onnxruntime_matches_pytorch_on_unseen_size(trained_run, h, w):
    """Exported at 3×5 LR; compare at other sizes with the method's own inference."""
    from maxrf_bench_plugins.proposed import super_resolve

    rng = np.random.default_rng(h)
    lr = rng.random((len(ELEMENTS), h, w), dtype=np.float32)
    rgb = rng.random((3, h * SCALE, w * SCALE), dtype=np.float32)
    out = maxrf_infer.run_model(session(trained_run["model"]), lr, rgb)
    ref = super_resolve(trained_run["generator"], lr, rgb, trained_run["operator"], project=True)
    assert out.shape == ref.shape == (len(ELEMENTS), h * SCALE, w * SCALE)
    assert np.abs(out - ref).max() <= 1e-5
    assert ref.std() > 0.01  # the comparison is not between two constants
    # and the projection holds: the block mean of the output is the LR input
    assert np.abs(mb.block_mean(out, SCALE) - lr).max() <= 1e-5


def test_export_variants_match_pytorch(tmp_path):
    """Ablation variants (linear synthesis, leaky ReLU, no projection), scale 3, unfused."""
    rng = np.random.default_rng(0)
    lr = rng.random((2, 5, 7), dtype=np.float32)
    rgb = rng.random((3, 15, 21), dtype=np.float32)
    norm = {"offset": [0.0, 0.0], "span": [1.0, 1.0]}
    for i, (cfg, proj, fuse) in enumerate([({"synthesis": "linear"}, True, True),
                                           ({"activation": "leaky_relu"}, False, True),
                                           ({}, True, False)]):
        g = random_generator(2, seed=i, n_atoms=16, n_layers=3, **cfg)
        path = onnx_export.export_generator(g, tmp_path / f"m{i}.onnx", elements=["A_K", "B_K"],
                                            scale=3, projection=proj, fuse=fuse,
                                            metadata={"normalisation": norm})
        ref = onnx_export.SuperResolvePipeline(g, 2, 3, proj)(torch.from_numpy(lr[None]),
                                                              torch.from_numpy(rgb[None]))
        out = maxrf_infer.run_model(session(path), lr, rgb)
        assert np.abs(out - ref.detach().numpy()[0]).max() <= 1e-5, (cfg, proj, fuse)
        consistent = np.abs(mb.block_mean(out, 3) - lr).max() <= 1e-5
        assert consistent == proj


def test_export_refusals(trained_run, tmp_path):
    with pytest.raises(mb.ConfigError, match="cannot be exported.*methods that can: .*proposed"):
        onnx_commands.export_model(trained_run["root"], tmp_path / "x.onnx", method="bicubic")
    with pytest.raises(mb.ConfigError, match="no cell toy/proposed|no dataset 'other'"):
        onnx_commands.export_model(trained_run["root"], tmp_path / "x.onnx", dataset="other")
    g = random_generator(2, n_atoms=8, n_layers=2)
    with pytest.raises(mb.ConfigError, match="blockmean operator, found 'gaussian'"):
        onnx_export.export_generator(g, tmp_path / "g.onnx", elements=["A_K", "B_K"], scale=2,
                                     operator={"name": "gaussian", "scale": 2, "sigma": 1.0},
                                     metadata={"normalisation": {"offset": [0, 0], "span": [1, 1]}})
    with pytest.raises(mb.ConfigError, match="normalisation"):
        onnx_export.export_generator(g, tmp_path / "n.onnx", elements=["A_K", "B_K"], scale=2)
    assert not list(tmp_path.iterdir())  # nothing half-written


def test_export_cli(trained_run, tmp_path):
    from maxrf_bench.cli import cli, _install_plugin_commands

    _install_plugin_commands()
    res = CliRunner().invoke(cli, ["export", "--run", str(trained_run["root"]), "-o",
                                   str(tmp_path / "m.onnx")])
    assert res.exit_code == 0, res.output
    assert maxrf_infer.read_model_info(tmp_path / "m.onnx").elements == ELEMENTS
    res = CliRunner().invoke(cli, ["export", "--run", str(trained_run["root"]), "--method",
                                   "bicubic", "-o", str(tmp_path / "b.onnx")])
    assert res.exit_code == 2 and "cannot be exported" in res.output


# --- tiles ----------------------------------------------------------------------------

@pytest.mark.parametrize("tile_hr", [4, 8, 12, 20])
def test_tiles_give_exactly_the_whole_image(trained_run, tile_hr):
    rng = np.random.default_rng(3)
    lr = rng.random((len(ELEMENTS), 7, 11), dtype=np.float32)
    rgb = rng.random((3, 28, 44), dtype=np.float32)
    sess = session(trained_run["model"])
    forward = lambda a, b: maxrf_infer.run_model(sess, a, b)  # noqa: E731
    whole = maxrf_infer.infer_tiled(forward, lr, rgb, SCALE, tile_hr=None)
    tiled = maxrf_infer.infer_tiled(forward, lr, rgb, SCALE, tile_hr=tile_hr)
    assert np.abs(tiled - whole).max() <= 1e-6
    # without the halo the tile seams are wrong: the halo is what makes it exact
    no_halo = maxrf_infer.infer_tiled(forward, lr, rgb, SCALE, tile_hr=tile_hr, halo=0)
    assert np.abs(no_halo - whole).max() > 1e-3


@pytest.mark.parametrize("tile_hr", [8, 12, None])
def test_tiles_of_a_core_compute_only_the_core(trained_run, tile_hr):
    """``core``: the pieces cover only the core and read their halo from around it (how
    maxrf-infer runs an I/O tile read with its halo): equal to the whole image there."""
    rng = np.random.default_rng(4)
    lr = rng.random((len(ELEMENTS), 9, 11), dtype=np.float32)
    rgb = rng.random((3, 36, 44), dtype=np.float32)
    calls = []
    sess = session(trained_run["model"])

    def forward(a, b):
        calls.append(a.shape[1:])
        return maxrf_infer.run_model(sess, a, b)
    whole = maxrf_infer.infer_tiled(forward, lr, rgb, SCALE, tile_hr=None)
    calls.clear()
    part = maxrf_infer.infer_tiled(forward, lr, rgb, SCALE, tile_hr=tile_hr, core=(2, 7, 3, 10))
    assert part.shape == (len(ELEMENTS), 20, 28)
    assert np.abs(part - whole[:, 8:28, 12:40]).max() <= 1e-6
    # the pieces read the core plus one LR pixel of halo, never the whole array
    assert sum(h * w for h, w in calls) <= (5 + 2 * len(calls)) * (7 + 2 * len(calls))
    assert max(h for h, _ in calls) <= 7 and max(w for _, w in calls) <= 9


@pytest.fixture(scope="module", params=[(3, "all"), (5, "all"), (5, "photo")])
def context_model(request, tmp_path_factory):
    """An exported context-aware generator (k×k analysis, synthesis k×k or 1×1), fused."""
    k, context = request.param
    g = random_generator(len(ELEMENTS), seed=k, n_atoms=16, n_layers=3, kernel=k, context=context)
    with torch.no_grad():  # every tap random (training starts from the centre tap only)
        for p in [*g.S, g.D]:
            if p.dim() == 4:
                p.normal_(0, 0.4)
    path = onnx_export.export_generator(g, tmp_path_factory.mktemp(f"ctx{k}{context}") / "m.onnx",
                                        elements=ELEMENTS, scale=SCALE,
                                        metadata={"normalisation": {"offset": [0.0] * 4, "span": [1.0] * 4}})
    return {"kernel": k, "context": context, "generator": g, "model": path}


def test_context_generator_export_matches_pytorch(context_model):
    from maxrf_bench_plugins.proposed import super_resolve

    info = maxrf_infer.read_model_info(context_model["model"])
    k, context = context_model["kernel"], context_model["context"]
    reach = context_model["generator"].halo
    assert reach == (k - 1 if context == "all" else (k - 1) // 2)
    assert info.halo_lr == onnx_export.tile_halo_lr(reach, SCALE) == {2: 1, 4: 2}[reach]
    assert info.metadata["kernel"] == k and info.metadata["context"] == context
    assert info.metadata["network"].startswith("FusedLista")
    ops = [n.op_type for n in onnx.load(context_model["model"]).graph.node]
    # the graph outputs the core of its input: the edge padding at the scan's edges is the
    # runtime's (run_model, infer_tiled), not a Pad of the graph's
    assert "Pad" not in ops and info.margin_lr == info.halo_lr
    sess = session(context_model["model"])
    for h, w in [(9, 13), (1, 6)]:
        rng = np.random.default_rng(h)
        lr = rng.random((len(ELEMENTS), h, w), dtype=np.float32)
        rgb = rng.random((3, h * SCALE, w * SCALE), dtype=np.float32)
        out = maxrf_infer.run_model(sess, lr, rgb)
        ref = super_resolve(context_model["generator"], lr, rgb, mb.BlockMean(SCALE), project=True,
                            batch=100)
        assert np.abs(out - ref).max() <= 1e-5 and ref.std() > 0.01
        assert np.abs(mb.block_mean(out, SCALE) - lr).max() <= 1e-5


@pytest.mark.parametrize("tile_hr", [4, 8, 12, 20])
def test_context_generator_tiles_give_exactly_the_whole_image(context_model, tile_hr):
    rng = np.random.default_rng(3)
    lr = rng.random((len(ELEMENTS), 7, 11), dtype=np.float32)
    rgb = rng.random((3, 28, 44), dtype=np.float32)
    sess = session(context_model["model"])
    halo = maxrf_infer.read_model_info(context_model["model"]).halo_lr
    forward = lambda a, b: maxrf_infer.run_model(sess, a, b)  # noqa: E731
    whole = maxrf_infer.infer_tiled(forward, lr, rgb, SCALE, tile_hr=None)
    tiled = maxrf_infer.infer_tiled(forward, lr, rgb, SCALE, tile_hr=tile_hr, halo=halo)
    assert np.abs(tiled - whole).max() <= 1e-5
    # one LR pixel less of halo is wrong at the seams: the halo is what makes it exact
    short = maxrf_infer.infer_tiled(forward, lr, rgb, SCALE, tile_hr=tile_hr, halo=halo - 1)
    assert np.abs(short - whole).max() > 1e-3


def test_core_only_graph_runs_only_the_core_and_equals_the_whole_image(trained_run, tmp_path):
    """The graph outputs its input's core (``margin_lr``): fed through ``run_graph`` with the
    halo, every piece returns exactly its core, equal to the whole image and to the model
    exported the way before (output = the whole input, ``core_only=False``)."""
    check_core_only(trained_run["generator"], tmp_path)


def test_core_only_context_graph_equals_the_whole_image(context_model, tmp_path):
    check_core_only(context_model["generator"], tmp_path)


def check_core_only(g, tmp_path):
    norm = {"offset": [0.0] * 4, "span": [1.0] * 4}
    new = onnx_export.export_generator(g, tmp_path / "new.onnx", elements=ELEMENTS, scale=SCALE,
                                       metadata={"normalisation": norm})
    old = onnx_export.export_generator(g, tmp_path / "old.onnx", elements=ELEMENTS, scale=SCALE,
                                       metadata={"normalisation": norm}, core_only=False)
    info_new, info_old = maxrf_infer.read_model_info(new), maxrf_infer.read_model_info(old)
    assert info_new.margin_lr == info_new.halo_lr == info_old.halo_lr and info_old.margin_lr == 0
    rng = np.random.default_rng(5)
    lr = rng.random((len(ELEMENTS), 9, 11), dtype=np.float32)
    rgb = rng.random((3, 36, 44), dtype=np.float32)
    sn, so = session(new), session(old)
    m = info_new.margin_lr
    assert maxrf_infer.run_graph(sn, lr, rgb).shape == (4, 36 - 8 * m, 44 - 8 * m)
    whole_old = maxrf_infer.run_graph(so, lr, rgb)
    whole_new = maxrf_infer.run_model(sn, lr, rgb)  # edge-padded by the margin: the whole image
    assert np.abs(whole_new - whole_old).max() <= 1e-5 and whole_old.std() > 0.01
    calls = []

    def forward(a, b):
        calls.append(a.shape[1:])
        return maxrf_infer.run_graph(sn, a, b)
    for tile_hr, core in [(8, None), (12, (2, 7, 3, 10)), (None, None)]:
        calls.clear()
        out = maxrf_infer.infer_tiled(forward, lr, rgb, SCALE, tile_hr=tile_hr, core=core, margin=m)
        cy0, cy1, cx0, cx1 = core or (0, 9, 0, 11)
        assert np.abs(out - whole_old[:, 4 * cy0:4 * cy1, 4 * cx0:4 * cx1]).max() <= 1e-5
        # each piece is its core plus the halo, nothing more: no output is thrown away
        assert sum((h - 2 * m) * (w - 2 * m) for h, w in calls) == (cy1 - cy0) * (cx1 - cx0)


def test_tile_halo_covers_the_receptive_field():
    """The smallest halo that makes tiles exact, by brute force on a 1-D model of the
    pipeline (bilinear ×s with edge clamping, then a reach of R HR pixels with edge replication)."""
    def pipeline(lr, s, reach):
        n = lr.size * s
        pos = np.clip((np.arange(n) + 0.5) / s - 0.5, 0, lr.size - 1)
        lo = np.floor(pos).astype(int)
        hi = np.minimum(lo + 1, lr.size - 1)
        x = lr[lo] * (1 - (pos - lo)) + lr[hi] * (pos - lo)
        xp = np.pad(x, reach, mode="edge")
        weights = np.arange(1, 2 * reach + 2) ** 1.5              # any reach-R filter
        return np.convolve(xp, weights, mode="valid")

    rng = np.random.default_rng(0)
    for s in (2, 3, 4):
        for k in range(0, 7):                                      # the reach R
            lr = rng.random(12)
            whole = pipeline(lr, s, k)
            need = 0
            for halo in range(0, 6):
                ok = True
                for a in range(0, 12, 3):                          # tiles of 3 LR pixels
                    e0, e1 = max(0, a - halo), min(12, a + 3 + halo)
                    out = pipeline(lr[e0:e1], s, k)[(a - e0) * s:(a - e0 + 3) * s]
                    ok &= np.abs(out - whole[a * s:(a + 3) * s]).max() < 1e-12
                if ok:
                    need = halo
                    break
            assert onnx_export.tile_halo_lr(k, s) == max(need, 1), (s, k, need)


# --- the runtime on Zarr stores --------------------------------------------------------

@pytest.fixture(scope="module")
def scan_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("scan") / "scan.zarr"
    mb.save_scan(make_lr_scan(10, 14), path, chunk=24)  # chunks not aligned with the tiles
    return path


def expected_counts(trained_run, scan_path):
    scan = mb.open_scan(scan_path)
    off, span = trained_run["offset"][:, None, None], trained_run["span"][:, None, None]
    lr = (scan["maps_lr"].values - off) / span
    out = maxrf_infer.run_model(session(trained_run["model"]), lr, scan["rgb"].values)
    return out * span + off


def read_maps(path):
    import xarray as xr

    with xr.open_zarr(path) as ds:
        return ds["maps"].values, [str(e) for e in ds["element"].values], dict(ds.attrs)


def test_cli_streams_tiles_into_zarr(trained_run, scan_path, tmp_path):
    out = tmp_path / "out.zarr"
    res = CliRunner().invoke(maxrf_infer.cli.infer_command,
                             [str(trained_run["model"]), str(scan_path), "-o", str(out),
                              "--tile", "24", "--compute-tile", "8", "--provider", "cpu"])
    assert res.exit_code == 0, res.output
    assert "provider CPUExecutionProvider" in res.output and "6 tiles)" in res.output
    maps, elements, attrs = read_maps(out)
    assert elements == ELEMENTS and maps.shape == (4, 40, 56)
    assert np.abs(maps - expected_counts(trained_run, scan_path)).max() <= 1e-6 * 200
    assert attrs["span"] == [120.0, 90.0, 150.0, 60.0]
    assert [p.name for p in tmp_path.iterdir()] == ["out.zarr"]  # no temporary left behind
    # the output is consistent with the measurement, in counts
    scan = mb.open_scan(scan_path)
    assert np.abs(mb.block_mean(maps, SCALE) - scan["maps_lr"].values).max() < 2e-3


def test_scan_with_ground_truth_only_is_degraded_like_the_runner(trained_run, tmp_path):
    """A benchmark scan (HR ``maps``, no ``maps_lr``): the run's own LR is the block mean."""
    scan = make_lr_scan(6, 6)
    hr = mb.nearest_up(scan["maps_lr"].values, SCALE) + np.random.default_rng(0).random((4, 24, 24))
    truth = mb.make_scan(rgb=scan["rgb"].values, maps=hr.astype(np.float32), elements=ELEMENTS)
    mb.save_scan(truth, tmp_path / "truth.zarr")
    lr = mb.block_mean(hr.astype(np.float32), SCALE)
    mb.save_scan(mb.make_scan(rgb=scan["rgb"].values, maps_lr=lr, elements=ELEMENTS),
                 tmp_path / "lr.zarr")
    a = maxrf_infer.infer(trained_run["model"], tmp_path / "truth.zarr", tmp_path / "a.zarr",
                          provider="cpu", progress=False, echo=lambda s: None)
    maxrf_infer.infer(trained_run["model"], tmp_path / "lr.zarr", tmp_path / "b.zarr",
                      provider="cpu", progress=False, echo=lambda s: None)
    assert a.shape == (4, 24, 24)
    assert np.abs(read_maps(tmp_path / "a.zarr")[0] - read_maps(tmp_path / "b.zarr")[0]).max() < 1e-4


def test_mismatched_scans_are_refused_with_both_lists(trained_run, tmp_path):
    model = trained_run["model"]
    cases = {
        "renamed": (make_lr_scan(4, 4, elements=["Pb_L", "Hg_L", "Cu_K", "Fe_K"]),
                    r"scan-only \['Fe_K'\], model-only \['Ca_K'\]"),
        "order": (make_lr_scan(4, 4, elements=["Hg_L", "Pb_L", "Cu_K", "Ca_K"]),
                  "same elements in another order"),
        "scale": (make_lr_scan(4, 4, scale=2), r"model .* has scale 4, scan .*\(ratio 2×2"),
    }
    for name, (scan, pattern) in cases.items():
        mb.save_scan(scan, tmp_path / f"{name}.zarr")
        with pytest.raises(maxrf_infer.InferError, match=pattern) as err:
            maxrf_infer.infer(model, tmp_path / f"{name}.zarr", tmp_path / f"{name}-out.zarr",
                              provider="cpu", progress=False, echo=lambda s: None)
        if name != "scale":
            assert str(ELEMENTS) in str(err.value) and str(scan["element"].values.tolist()) in str(err.value)
        assert not (tmp_path / f"{name}-out.zarr").exists()
    res = CliRunner().invoke(maxrf_infer.cli.infer_command,
                             [str(model), str(tmp_path / "order.zarr"), "-o", str(tmp_path / "o.zarr")])
    assert res.exit_code == 2 and res.output.startswith("Error: scan elements do not match")


def test_provider_truth(trained_run):
    sess, used = maxrf_infer.create_session(trained_run["model"], "auto")
    assert used == sess.get_providers()[0]
    if used == "CUDAExecutionProvider":
        pytest.skip("a working CUDA provider: the refusal cannot be shown here")
    with pytest.raises(maxrf_infer.InferError, match="--provider cuda: CUDA is not available"):
        maxrf_infer.create_session(trained_run["model"], "cuda")


def test_dask_local_cluster_gives_the_same_maps(trained_run, scan_path, tmp_path):
    distributed = pytest.importorskip("distributed")
    expected = expected_counts(trained_run, scan_path)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster:
        res = maxrf_infer.infer(trained_run["model"], scan_path, tmp_path / "d.zarr", tile=16,
                                provider="cpu", scheduler=cluster.scheduler_address,
                                progress=False, echo=lambda s: None)
        workers = len(cluster.scheduler_info["workers"])
    assert workers == 2 and res.providers == ["CPUExecutionProvider"] and res.tiles == 12
    assert np.abs(read_maps(tmp_path / "d.zarr")[0] - expected).max() <= 2e-4
    res = maxrf_infer.infer(trained_run["model"], scan_path, tmp_path / "t.zarr", tile=8,
                            provider="cpu", scheduler="threads", progress=False, echo=lambda s: None)
    assert np.abs(read_maps(tmp_path / "t.zarr")[0] - expected).max() <= 2e-4


def test_workers_give_the_sequential_maps_exactly(trained_run, context_model, scan_path, tmp_path):
    """Tiles in flight in several threads, each on its own single-threaded session: the
    same maps, bit for bit, as one tile at a time on one single-threaded session."""
    for name, model in (("pixel", trained_run["model"]), ("ctx", context_model["model"])):
        lines = []
        seq = maxrf_infer.infer(model, scan_path, tmp_path / f"{name}-1.zarr", tile=16, provider="cpu",
                                workers=1, threads=1, compute_tile=8, progress=False, echo=lines.append)
        par = maxrf_infer.infer(model, scan_path, tmp_path / f"{name}-3.zarr", tile=16, provider="cpu",
                                workers=3, compute_tile=8, progress=False, echo=lines.append)
        assert seq.tiles == par.tiles == 12
        assert "3 tiles at once, 1 thread(s) each" in lines[-1] and "at once" not in lines[0]
        a, b = read_maps(tmp_path / f"{name}-1.zarr")[0], read_maps(tmp_path / f"{name}-3.zarr")[0]
        assert np.array_equal(a, b)
        if name == "pixel":
            assert np.abs(a - expected_counts(trained_run, scan_path)).max() <= 1e-6 * 200
    assert maxrf_infer.stream.plan_workers(None, None, "CPUExecutionProvider", 100)[1] == 1
    assert maxrf_infer.stream.plan_workers(None, None, "CUDAExecutionProvider", 100) == (1, None)
    assert maxrf_infer.stream.plan_workers(8, None, "CPUExecutionProvider", 3) == (3, 1)


def test_int8_is_a_labelled_option_with_its_difference_printed(trained_run, scan_path, tmp_path):
    """``--precision int8``: the model quantised on the scan's tiles; close to fp32 (not equal),
    the difference printed, recorded in the output's attributes; fp32 stays the default."""
    res = CliRunner().invoke(maxrf_infer.cli.infer_command,
                             [str(trained_run["model"]), str(scan_path), "-o", str(tmp_path / "q.zarr"),
                              "--tile", "16", "--precision", "int8", "--workers", "2"])
    assert res.exit_code == 0, res.output
    line = next(x for x in res.output.splitlines() if "precision int8" in x)
    diff = float(line.split("difference to fp32 ")[1].split()[0])
    maps, _, attrs = read_maps(tmp_path / "q.zarr")
    expected = expected_counts(trained_run, scan_path)
    err = np.abs(maps - expected).max() / np.abs(expected).max()
    assert 1e-5 < err < 0.05 and 0 < diff < 0.05 and attrs["precision"] == "int8"
    _, _, attrs = read_maps(maxrf_infer.infer(trained_run["model"], scan_path, tmp_path / "f.zarr", tile=16,
                                              provider="cpu", progress=False, echo=lambda s: None).output)
    assert "precision" not in attrs


@pytest.mark.parametrize("args,message", [
    (["--workers", "0"], "--workers expects an integer ≥ 1, found 0"),
    (["--workers", "2", "--scheduler", "threads"], "--workers applies without --scheduler"),
    (["--precision", "fp16"], "--precision expects one of fp32, int8, found 'fp16'"),
    (["--precision", "int8", "--scheduler", "threads"], "--precision int8 runs on the CPU without --scheduler"),
])
def test_bad_workers_or_precision_is_one_line_and_exit_2(trained_run, scan_path, tmp_path, args, message):
    res = CliRunner().invoke(maxrf_infer.cli.infer_command,
                             [str(trained_run["model"]), str(scan_path), "-o", str(tmp_path / "o.zarr"), *args])
    assert res.exit_code == 2 and res.output.startswith(f"Error: {message}"), res.output
    assert len(res.output.strip().splitlines()) == 1 and not (tmp_path / "o.zarr").exists()


def test_int8_without_the_quantisation_tool_says_what_to_install(trained_run, scan_path, tmp_path,
                                                                  monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime.quantization", None)  # as if onnx were absent
    res = CliRunner().invoke(maxrf_infer.cli.infer_command,
                             [str(trained_run["model"]), str(scan_path), "-o", str(tmp_path / "o.zarr"),
                              "--precision", "int8"])
    assert res.exit_code == 2 and "pip install 'maxrf-infer[int8]'" in res.output, res.output
    assert len(res.output.strip().splitlines()) == 1 and not (tmp_path / "o.zarr").exists()


def test_maxrf_infer_never_imports_torch(trained_run, scan_path, tmp_path):
    code = (
        "import sys\n"
        "from maxrf_infer.cli import main\n"
        "try:\n"
        f"    main([{str(trained_run['model'])!r}, {str(scan_path)!r}, '-o', {str(tmp_path / 'o.zarr')!r}, '-q'])\n"
        "except SystemExit as e:\n"
        "    assert not e.code, e.code\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'maxrf_bench', 'maxrf_bench_plugins'))\n"
        "assert not bad, bad\n"
        "print('ok')\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0 and res.stdout.strip() == "ok", res.stderr
    assert (tmp_path / "o.zarr").is_dir()


def test_maxrf_infer_unexpected_error_is_one_line_and_exit_70(tmp_path, monkeypatch, capsys):
    import maxrf_infer.stream

    def broken(*args, **kwargs):
        raise ZeroDivisionError("planted")

    monkeypatch.setattr(maxrf_infer.stream, "infer", broken)
    monkeypatch.delenv("MAXRF_INFER_DEBUG", raising=False)
    monkeypatch.delenv("MAXRF_BENCH_DEBUG", raising=False)
    model, scan = tmp_path / "m.onnx", tmp_path / "s.zarr"
    with pytest.raises(SystemExit) as exit_info:
        maxrf_infer.cli.main([str(model), str(scan), "-o", str(tmp_path / "o.zarr"), "-q"])
    assert exit_info.value.code == 70
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "ZeroDivisionError: planted" in err and "Traceback" not in err
    monkeypatch.setenv("MAXRF_INFER_DEBUG", "1")
    with pytest.raises(ZeroDivisionError, match="planted"):
        maxrf_infer.cli.main([str(model), str(scan), "-o", str(tmp_path / "o.zarr"), "-q"])
