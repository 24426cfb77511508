"""A ``proposed[recorrupt>0]`` generator (the ``ctx-quickscan`` preset's noise-aware training,
ours) exports with the noise of its run's recorrupted inference, and the torch-free runtime
draws the same noise for any tile (issue 21 leftover)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import maxrf_bench as mb
from maxrf_bench.testing import toy_scene

pytest.importorskip("torch")
pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

import maxrf_infer  # noqa: E402
from maxrf_infer.recorrupt import (RecorruptError, read_record, recorrupted_input,  # noqa: E402
                                   standard_normal)

BIN = Path(sys.executable).parent
P = "proposed[adversarial_iterations=0,atoms=8,kernel=5,layers=2,pretrain_iterations=30,"
# ctx-quickscan's recorruption (without the projection, with the registration), and one that
# projects the average and recorrupts only some elements (labels as the run spells them)
QUICK = P + "projection=False,recorrupt=0.5,register=lr,threads=1,use_adv=False]"
PROJ = P + "recorrupt=0.5,recorrupt_share=0.06,threads=1,use_adv=False]"
QUICK_W = QUICK.replace("proposed[", "proposed+W[")     # the column a conservator reads


def _scene(size=48):
    """Counts with a noise-free truth (for the acquisition protocol) and a photograph shifted by
    (1.5, −1) px plus a wobble, so that ctx-quickscan's registration applies a field."""
    d = toy_scene(size, elements=3, seed=4)
    clean = d["maps"].astype(np.float64) * 5 + 2.0
    maps = np.random.default_rng(7).poisson(clean).astype(np.float32)
    yy, xx = np.mgrid[0:size, 0:size] / size
    shift = np.stack([1.5 + 0.5 * np.sin(2 * np.pi * xx), -1.0 + 0.5 * np.cos(2 * np.pi * yy)])
    rgb = mb.warp_photo(np.asarray(d["rgb"], np.float32), shift)
    return {**d, "rgb": rgb, "maps": maps, "maps_clean": clean.astype(np.float32)}


def _lr_scan(run_dir: Path, key: str, path: Path) -> Path:
    """The LR scan a run's methods saw (its saved normalised inputs), in counts, for maxrf-infer."""
    ds = mb.load_inputs(run_dir, *key.split("@"))
    off = np.asarray(ds.attrs["offset"], np.float32)[:, None, None]
    span = np.asarray(ds.attrs["span"], np.float32)[:, None, None]
    counts = ds["maps_lr"].values * span + off
    scan = mb.make_scan(maps_lr=counts.astype(np.float32), rgb=ds["rgb"].values,
                        elements=[str(e) for e in ds["element"].values], title="lr")
    return mb.save_scan(scan, path, chunk=24)


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    """Real runs of a recorrupt column under the full protocol (blind σ) and the acquisition
    protocol (σ from the counts), each exported; the scans they ran on, in counts."""
    from maxrf_bench_plugins import onnx_commands

    tmp = tmp_path_factory.mktemp("quick")
    scan = mb.save_scan(mb.make_scan(**_scene(), title="toy"), tmp / "toy.zarr", chunk=24)
    mb.run_grid([QUICK, QUICK_W, PROJ], [str(scan)], out=tmp / "run", seeds=[3], protocols=["full", "acquisition"],
                scan_times="1/4")
    out = {"tmp": tmp, "scan": scan}
    for tag, protocol in (("full", "full"), ("acq", "acquisition-1_4")):
        key = "toy" if protocol == "full" else f"toy@{protocol}"
        out[tag] = {"scan": _lr_scan(tmp / "run", key, tmp / f"{tag}.zarr")}
        for name, label in (("quick", QUICK), ("proj", PROJ)):
            model = onnx_commands.export_model(tmp / "run", tmp / f"{tag}-{name}.onnx", dataset="toy",
                                               method=label, protocol=protocol)
            maps = mb.load_maps(tmp / "run", "toy", label, protocol=protocol)["maps"].values
            out[tag][name] = {"model": model, "maps": maps}
        out[tag]["quick"]["maps_w"] = mb.load_maps(tmp / "run", "toy", QUICK_W, protocol=protocol)["maps"].values
    return out


def _infer(model, scan, out, **kw):
    maxrf_infer.infer(model, scan, out, provider="cpu", progress=False, echo=lambda s: None, **kw)
    import xarray as xr

    with xr.open_zarr(out) as ds:
        return ds["maps"].values


def _rel(a, b):
    return float(np.abs(a - b).max() / np.abs(b).max())


def test_noise_is_counter_based_and_the_same_in_any_region():
    whole = standard_normal(5, 2, 3, slice(0, 40), slice(0, 56))
    assert whole.dtype == np.float32 and abs(float(whole.mean())) < 0.03 and abs(float(whole.std()) - 1) < 0.03
    np.testing.assert_array_equal(standard_normal(5, 2, 3, slice(7, 30), slice(11, 56)), whole[:, 7:30, 11:56])
    # another draw, seed or element is another noise
    for other in (standard_normal(5, 3, 3, slice(0, 40), slice(0, 56)),
                  standard_normal(6, 2, 3, slice(0, 40), slice(0, 56))):
        assert abs(np.corrcoef(other.ravel(), whole.ravel())[0, 1]) < 0.05
    assert abs(np.corrcoef(whole[0].ravel(), whole[1].ravel())[0, 1]) < 0.05
    lr = np.ones((3, 4, 5), np.float32)
    sigma = np.array([0.1, 0.0, 0.2], np.float32)[:, None, None]
    noisy = recorrupted_input(lr, sigma, 0.5, 5, 2, origin=(7, 11))
    np.testing.assert_allclose(noisy, lr + 0.5 * whole[:, 7:11, 11:16] * sigma, rtol=0, atol=1e-7)
    assert (noisy[1] == 1).all()


@pytest.mark.parametrize("tag", ["full", "acq"])
@pytest.mark.parametrize("name", ["quick", "proj"])
def test_the_exported_recorrupt_run_reproduces_the_runs_maps(quick_run, tag, name):
    case = quick_run[tag][name]
    info = maxrf_infer.read_model_info(case["model"])
    rec = info.recorrupt
    assert rec["alpha"] == 0.5 and rec["draws"] == 8 and rec["seed"] == 3
    assert rec["noise"]["model"] == ("blind" if tag == "full" else "counts")
    if tag == "acq":  # k = t·s² LR dwell in HR dwells
        assert rec["noise"]["dwell"] == pytest.approx(4.0)
    assert rec["projection"] is (name == "proj") and info.projection is False  # the graph never projects
    assert (info.photo_field is not None) is (name == "quick")           # register=lr applied its field
    ref = case["maps"]
    maps = _infer(case["model"], quick_run[tag]["scan"], quick_run["tmp"] / f"{tag}-{name}-w.zarr", tile=0)
    assert _rel(maps, ref) <= 1e-5
    tiled = _infer(case["model"], quick_run[tag]["scan"], quick_run["tmp"] / f"{tag}-{name}-t.zarr",
                   tile=16, compute_tile=8)
    assert _rel(tiled, ref) <= 1e-5
    # the graph alone on the LR maps (no recorruption) is another map: the noise matters
    scan = mb.open_scan(quick_run[tag]["scan"])
    off, span = info.offset[:, None, None], info.span[:, None, None]
    lr = (scan["maps_lr"].values - off) / span
    photo = maxrf_infer.registered_photo(scan["rgb"].values, info.photo_field, info.scale)
    sess = maxrf_infer.create_session(case["model"], "cpu")[0]
    assert _rel(maxrf_infer.run_model(sess, lr, photo) * span + off, ref) > 1e-3
    assert _rel(maxrf_infer.run_model(sess, lr, photo, info) * span + off, ref) <= 1e-5
    if name == "proj":  # U(maps) = the LR scan, as the run's projected output
        got = mb.block_mean(np.asarray(maps, np.float64), 4)
        assert np.abs(got - scan["maps_lr"].values).max() <= 1e-4 * np.abs(scan["maps_lr"].values).max()


def test_dask_and_workers_draw_the_same_noise(quick_run):
    case, scan = quick_run["full"]["quick"], quick_run["full"]["scan"]
    seq = _infer(case["model"], scan, quick_run["tmp"] / "seq.zarr", tile=16, workers=1)
    np.testing.assert_array_equal(_infer(case["model"], scan, quick_run["tmp"] / "dask.zarr", tile=16,
                                         scheduler="threads"), seq)
    np.testing.assert_array_equal(_infer(case["model"], scan, quick_run["tmp"] / "pool.zarr", tile=24,
                                         workers=2), _infer(case["model"], scan, quick_run["tmp"] / "s24.zarr",
                                                            tile=24, workers=1))


def test_the_run_records_what_its_inference_drew(quick_run):
    """The blind σ recorded is the one the run drew with; recorrupt_share's selection travels."""
    from maxrf_bench_plugins.proposed.method import RECORRUPT_RECORD

    cell = mb.find_cell(quick_run["tmp"] / "run", "toy", PROJ, protocol="full")
    rec = json.loads((cell / "work" / RECORRUPT_RECORD).read_text())
    info = maxrf_infer.read_model_info(quick_run["full"]["proj"]["model"])
    assert info.recorrupt["noise"]["sigma"] == rec["sigma"] and len(rec["sigma"]) == 3
    assert info.recorrupt["elements"] == rec["elements"] and 0 < sum(rec["elements"]) < 3, rec["elements"]
    meta = json.loads(dict(info.metadata)["lr_noise"]) if isinstance(info.metadata["lr_noise"], str) \
        else info.metadata["lr_noise"]
    np.testing.assert_allclose(meta["sigma"], rec["sigma"], rtol=1e-6)  # the host's blind σ, float32 there


def test_bad_records_and_runs_without_a_record_are_refused(quick_run, tmp_path):
    import shutil

    from maxrf_bench_plugins import onnx_commands

    good = maxrf_infer.read_model_info(quick_run["acq"]["quick"]["model"]).recorrupt
    assert read_record(good, 3) == good
    for bad, says in [({**good, "format": "x/1"}, "format"), ({**good, "generator": "torch"}, "generator"),
                      ({**good, "draws": 0}, "draws"), ({**good, "noise": {"model": "counts", "dwell": -1}}, "dwell"),
                      ({**good, "noise": {"model": "blind", "sigma": [0.1]}}, "sigma"),
                      ({**good, "elements": [True]}, "elements")]:
        with pytest.raises(RecorruptError, match=says):
            read_record(bad, 3)
    # a run whose inference left no record (before the counter-based draws): one line, exit 2
    run = tmp_path / "run"
    shutil.copytree(quick_run["tmp"] / "run", run)
    cell = mb.find_cell(run, "toy", QUICK)
    (cell / "work" / "recorrupt.json").unlink()
    with pytest.raises(mb.ConfigError, match="recorrupt=0.5.*run the cell again"):
        onnx_commands.export_model(run, tmp_path / "m.onnx", dataset="toy", method=QUICK)
    res = subprocess.run([str(BIN / "maxrf-bench"), "export", "--run", str(run), "-d", "toy", "-m", QUICK,
                          "-o", str(tmp_path / "m.onnx")], capture_output=True, text=True)
    assert res.returncode == 2 and len(res.stderr.strip().splitlines()) == 1, res.stderr
    assert not (tmp_path / "m.onnx").exists()


@pytest.mark.parametrize("tag", ["full", "acq"])
def test_noise_aware_option_gives_the_runs_plus_w_column(quick_run, tag):
    """``maxrf-infer --noise-aware``: the host's +W (ours) after the model, whole or tiled,
    equals the run's ``proposed+W[...]`` column; its τ² is a whole-scan statistic, so tiles
    that computed it on their own would differ."""
    from maxrf_infer.weighted import weighted_projection

    case, scan = quick_run[tag]["quick"], quick_run[tag]["scan"]
    ref_w, ref = case["maps_w"], case["maps"]
    assert _rel(ref_w, ref) > 1e-4                                   # +W acts on these maps
    whole = _infer(case["model"], scan, quick_run["tmp"] / f"{tag}-W.zarr", tile=0, noise_aware=True)
    assert _rel(whole, ref_w) <= 1e-5
    tiled = _infer(case["model"], scan, quick_run["tmp"] / f"{tag}-Wt.zarr", tile=16, noise_aware=True)
    assert _rel(tiled, ref_w) <= 1e-5
    import xarray as xr

    with xr.open_zarr(quick_run["tmp"] / f"{tag}-Wt.zarr") as ds:
        assert ds.attrs["variant"].startswith("+W") and len(ds.attrs["w_tau2"]) == 3
    # in memory, on one tile alone, τ² is that tile's: another map there
    info = maxrf_infer.read_model_info(case["model"])
    off, span = info.offset[:, None, None], info.span[:, None, None]
    lr = (mb.open_scan(scan)["maps_lr"].values - off) / span
    raw = (ref - off) / span
    np.testing.assert_allclose(weighted_projection(raw, lr, info.metadata["lr_noise"], info.offset, info.span, 4)
                               * span + off, ref_w, rtol=0, atol=1e-5 * np.abs(ref_w).max())
    part = weighted_projection(raw[:, :16, :16], lr[:, :4, :4], info.metadata["lr_noise"], info.offset,
                               info.span, 4) * span + off
    assert np.abs(part - ref_w[:, :16, :16]).max() > 1e-6 * np.abs(ref_w).max()


def test_noise_aware_without_a_noise_model_is_one_line_and_exit_2(quick_run, tmp_path):
    import onnx

    model = onnx.load(str(quick_run["full"]["quick"]["model"]))
    keep = [p for p in model.metadata_props if p.key != "lr_noise"]
    del model.metadata_props[:]
    model.metadata_props.extend(keep)
    onnx.save(model, str(tmp_path / "old.onnx"))
    res = subprocess.run([str(BIN / "maxrf-infer"), str(tmp_path / "old.onnx"), str(quick_run["full"]["scan"]),
                          "-o", str(tmp_path / "out.zarr"), "--provider", "cpu", "-q", "--noise-aware"],
                         capture_output=True, text=True)
    assert res.returncode == 2 and len(res.stderr.strip().splitlines()) == 1, res.stderr
    assert "--noise-aware" in res.stderr and "lr_noise" in res.stderr
    assert not (tmp_path / "out.zarr").exists()
