"""Pretrained single-image SR baselines ``car``, ``hat``, ``swin2sr`` (issue 11).

No released weights exist here, so each test builds its architecture small (few blocks,
few features, window 4) with random weights, saves it in the layout of the authors'
release (CAR: EDSR state dict with ``module.`` keys; HAT: ``{"params_ema": …}``; Swin2SR:
``{"params": …}``), and loads it through the plugin with ``--set NAME.weights=PATH``.
"""
from __future__ import annotations

import importlib
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

import maxrf_bench as mb
from maxrf_bench.testing import toy_scene

torch = pytest.importorskip("torch")

from maxrf_bench_plugins.sisr import _spandrel  # noqa: E402
from maxrf_bench_plugins.sisr.edsr import EDSR, edsr_config  # noqa: E402

BIN = Path(sys.executable).parent / "maxrf-bench"
METHODS = ("car", "hat", "swin2sr")


def small_network(method: str, scale: int = 4, seed: int = 0):
    """A small random network of ``method``'s architecture, in eval mode."""
    torch.manual_seed(seed)
    if method == "car":
        return EDSR(blocks=2, features=8, scale=scale).eval()
    spandrel = _spandrel.import_spandrel(method)  # noqa: F841  (imports the architectures)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"torch\.meshgrid", category=UserWarning)
        if method == "hat":
            from spandrel.architectures.HAT import HAT

            return HAT(img_size=16, embed_dim=12, depths=(2,), num_heads=(2,), window_size=4,
                       compress_ratio=3, squeeze_factor=4, mlp_ratio=2, num_feat=8,
                       upscale=scale, upsampler="pixelshuffle").eval()
        from spandrel.architectures.Swin2SR import Swin2SR

        return Swin2SR(img_size=16, embed_dim=12, depths=[2], num_heads=[2], window_size=4,
                       mlp_ratio=2, upscale=scale, upsampler="pixelshuffle",
                       resi_connection="1conv").eval()


def save_release_layout(method: str, model, path: Path) -> Path:
    """Save ``model`` as the authors' release files are laid out."""
    sd = model.state_dict()
    if method == "car":  # CAR saved its EDSR from inside nn.DataParallel
        obj = {"module." + k: v for k, v in sd.items()}
    elif method == "hat":
        obj = {"params_ema": sd}
    else:
        obj = {"params": sd}
    torch.save(obj, path)
    return path


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """``method → (model, path)`` for the three small ×4 networks."""
    d = tmp_path_factory.mktemp("weights")
    out = {}
    for m in METHODS:
        model = small_network(m)
        out[m] = (model, save_release_layout(m, model, d / f"{m}_small_x4.pth"))
    return out


def expected_sr(model, maps_lr: np.ndarray) -> np.ndarray:
    """The pipeline written out: per-map [0, 1] scaling, 3 channels, channel mean, unscaled."""
    out = []
    with torch.no_grad(), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"torch\.meshgrid", category=UserWarning)
        for m in np.asarray(maps_lr, np.float64):
            lo, hi = m.min(), m.max()
            x = torch.from_numpy(((m - lo) / (hi - lo)).astype(np.float32))[None, None].repeat(1, 3, 1, 1)
            out.append(lo + (hi - lo) * model(x).mean(1)[0].double().numpy())
    return np.stack(out)


def lr_inputs(maps_lr: np.ndarray, scale: int = 4, device: str = "cpu") -> mb.MethodInputs:
    n, h, w = maps_lr.shape
    names = [f"X{i}_K" for i in range(n)]
    return mb.MethodInputs(
        maps_lr=xr.DataArray(maps_lr.astype(np.float32), dims=("element", "y_lr", "x_lr"),
                             coords={"element": names}),
        rgb=xr.DataArray(np.zeros((3, scale * h, scale * w), np.float32), dims=("band", "y", "x"),
                         coords={"band": ["R", "G", "B"], "y": np.arange(scale * h),
                                 "x": np.arange(scale * w)}),
        operator=mb.BlockMean(scale), device=device)


def run_method(method: str, inputs: mb.MethodInputs, **params) -> np.ndarray:
    spec = mb.get_method(method)
    return np.asarray(spec.run(inputs, **spec.params("paper", params)))


# --- registration -----------------------------------------------------------------------

def test_the_three_methods_are_registered_as_deterministic_single_image_methods():
    methods = mb.get_methods()
    for m in METHODS:
        spec = methods[m]
        assert set(spec.presets) >= {"paper", "fast"}
        assert spec.defaults["weights"] == "" and not spec.uses_rgb and spec.deterministic
        assert not spec.projects_with(spec.params("paper"))


# --- through the host: the checkpoint layout, shape, scale and units -------------------

@pytest.mark.parametrize("method", METHODS)
def test_release_layout_checkpoint_runs_through_run_grid(tmp_path, checkpoints, method):
    model, path = checkpoints[method]
    size = 64  # 16 LR pixels at x4: spandrel's minimum for HAT / Swin2SR
    scan = mb.make_scan(**toy_scene(size, 3, seed=1), title="toy")
    scan_path = mb.save_scan(scan, tmp_path / "toy.zarr")
    mb.run_grid([method], [str(scan_path)], out=tmp_path / "run", scale=4, preset="fast",
                sets={method: {"weights": str(path)}})
    label = f"{method}[weights={path.name}]"
    sr = mb.load_maps(tmp_path / "run", "toy", label)["maps_norm"].values
    prep = mb.prepare_scan(scan, name="toy", scale=4)
    lr = prep.maps_lr.values
    assert sr.shape == (3, size, size) == prep.truth.shape
    # exactly the network applied as the package docstring says, in the units of maps_lr
    np.testing.assert_allclose(sr, expected_sr(model, lr), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("method", METHODS)
def test_output_follows_affine_units_and_constant_maps_stay_constant(checkpoints, method):
    _, path = checkpoints[method]
    rng = np.random.default_rng(0)
    m = rng.random((16, 20)).astype(np.float32)
    maps = np.stack([m, 3.0 * m + 0.5, np.full_like(m, 0.37)])
    sr = run_method(method, lr_inputs(maps), weights=str(path))
    assert sr.shape == (3, 64, 80) and sr.dtype == np.float32
    np.testing.assert_allclose(sr[1], 3.0 * sr[0] + 0.5, rtol=1e-5, atol=1e-5)
    assert np.all(sr[2] == np.float32(0.37))
    assert np.ptp(sr[0]) > 0.1  # the network did something (not a constant output)


def test_malformed_tile_parameters_are_refused(checkpoints):
    with pytest.raises(mb.ConfigError, match="tile"):
        run_method("car", lr_inputs(np.random.rand(1, 8, 8)), weights=str(checkpoints["car"][1]),
                   tile=-1)


def test_tiles_with_enough_overlap_reproduce_the_whole_map(checkpoints):
    # the small EDSR sees 7.75 LR pixels around each output pixel: an overlap of 8 covers it
    _, path = checkpoints["car"]
    maps = np.random.default_rng(1).random((1, 24, 20)).astype(np.float32)
    inputs = lr_inputs(maps)
    whole = run_method("car", inputs, weights=str(path), tile=0)
    tiled = run_method("car", inputs, weights=str(path), tile=8, tile_overlap=8)
    np.testing.assert_allclose(tiled, whole, rtol=1e-5, atol=1e-5)
    seams = run_method("car", inputs, weights=str(path), tile=8, tile_overlap=0)
    assert np.abs(seams - whole).max() > 1e-3  # without context the tiles differ


def test_car_reads_the_architecture_and_scale_from_the_file(tmp_path):
    for scale in (2, 3, 4):
        sd = EDSR(blocks=3, features=16, scale=scale).state_dict()
        assert edsr_config(sd) == {"blocks": 3, "features": 16, "scale": scale}
    # CAR's own size, read back from the keys CAR's usn.pth has
    assert edsr_config(EDSR().state_dict()) == {"blocks": 32, "features": 256, "scale": 4}


def test_legacy_torch_file_and_safetensors_load(tmp_path, checkpoints):
    model, _ = checkpoints["car"]
    maps = np.random.default_rng(2).random((2, 8, 8)).astype(np.float32)
    expected = expected_sr(model, maps)
    legacy = tmp_path / "usn.pth"  # torch < 1.6 files (CAR's torch 1.3.1) are not zip files
    torch.save({"module." + k: v for k, v in model.state_dict().items()}, legacy,
               _use_new_zipfile_serialization=False)
    np.testing.assert_allclose(run_method("car", lr_inputs(maps), weights=str(legacy)), expected,
                               rtol=1e-4, atol=1e-5)
    safetensors = pytest.importorskip("safetensors.torch")
    st = tmp_path / "usn.safetensors"
    safetensors.save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(st))
    np.testing.assert_allclose(run_method("car", lr_inputs(maps), weights=str(st)), expected,
                               rtol=1e-4, atol=1e-5)


# --- refusals: one clear line each ------------------------------------------------------

def test_missing_weights_stop_the_cli_with_one_line_naming_the_file(tmp_path):
    scan_path = mb.save_scan(mb.make_scan(**toy_scene(32, 2), title="toy"), tmp_path / "toy.zarr")
    res = subprocess.run([str(BIN), "run", "-m", "hat", "-d", str(scan_path), "-o",
                          str(tmp_path / "out"), "--quiet"], capture_output=True, text=True)
    assert res.returncode == 2, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in res.stderr
    assert "HAT_SRx4_ImageNet-pretrain.pth" in lines[0]
    assert "--set hat.weights=PATH" in lines[0] and "github.com/XPixelGroup/HAT" in lines[0]


@pytest.mark.parametrize("method, scale, names", [
    ("car", 4, ["usn.pth", "4x", "github.com/sunwj/CAR", "--set car.weights=PATH"]),
    ("car", 2, ["usn.pth", "2x"]),
    ("swin2sr", 4, ["Swin2SR_ClassicalSR_X4_64.pth", "releases/download/v0.0.1/",
                    "--set swin2sr.weights=PATH"]),
    ("swin2sr", 3, ["x2, x4", "--scale 4"]),
    ("hat", 2, ["HAT_SRx2_ImageNet-pretrain.pth"]),
])
def test_missing_weights_message_names_the_file_for_the_scale(method, scale, names):
    maps = np.random.rand(1, 8, 8)
    with pytest.raises(mb.ConfigError) as err:
        run_method(method, lr_inputs(maps, scale))
    msg = str(err.value)
    assert "\n" not in msg
    for name in names:
        assert name in msg


def test_a_path_that_does_not_exist_is_named(tmp_path):
    with pytest.raises(mb.ConfigError, match="no such file .*nothere.pth"):
        run_method("hat", lr_inputs(np.random.rand(1, 16, 16)), weights=str(tmp_path / "nothere.pth"))


@pytest.mark.parametrize("method", ["car", "hat"])
def test_a_checkpoint_of_another_scale_is_refused(tmp_path, method):
    path = save_release_layout(method, small_network(method, scale=2), tmp_path / "x2.pth")
    with pytest.raises(mb.ConfigError) as err:
        run_method(method, lr_inputs(np.random.rand(1, 16, 16), scale=4), weights=str(path))
    msg = str(err.value)
    assert "x2 model" in msg and "scale is x4" in msg and "--scale 2" in msg


def test_a_checkpoint_of_another_architecture_is_refused(checkpoints):
    with pytest.raises(mb.ConfigError, match="Swin2SR checkpoint, not HAT"):
        run_method("hat", lr_inputs(np.random.rand(1, 16, 16)), weights=str(checkpoints["swin2sr"][1]))
    with pytest.raises(mb.ConfigError, match="EDSR"):
        run_method("car", lr_inputs(np.random.rand(1, 16, 16)), weights=str(checkpoints["hat"][1]))


class _Payload:
    """Unpickling this calls ``os.mkdir(marker)``: what a malicious weights file could do."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


@pytest.mark.parametrize("method", ["car", "hat"])
def test_a_malicious_pickle_is_refused_and_not_executed(tmp_path, method):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    torch.save({"params_ema": {"conv_first.weight": _Payload(marker)}}, path)
    with pytest.raises(mb.ConfigError, match="weights_only=True refused it"):
        run_method(method, lr_inputs(np.random.rand(1, 16, 16)), weights=str(path))
    assert not marker.exists()
    torch.load(path, weights_only=False)  # control: a blind unpickle does run the payload
    assert marker.exists()


def test_cuda_is_used_when_asked_and_refused_without_a_gpu(checkpoints):
    maps = np.random.default_rng(3).random((1, 16, 16)).astype(np.float32)
    path = str(checkpoints["hat"][1])
    if not torch.cuda.is_available():
        with pytest.raises(mb.ConfigError, match="no CUDA GPU"):
            run_method("hat", lr_inputs(maps, device="cuda"), weights=path)
        return
    gpu = run_method("hat", lr_inputs(maps, device="cuda"), weights=path)
    cpu = run_method("hat", lr_inputs(maps, device="cpu"), weights=path)
    np.testing.assert_allclose(gpu, cpu, rtol=1e-3, atol=1e-4)


# --- spandrel beside a torchvision that does not import -----------------------------------

def test_spandrel_imports_and_no_stand_in_torchvision_stays_behind():
    spandrel = _spandrel.import_spandrel()
    assert "HAT" in spandrel.MAIN_REGISTRY and "Swin2SR" in spandrel.MAIN_REGISTRY
    tv = sys.modules.get("torchvision")
    assert tv is None or not getattr(tv, "__maxrf_bench_standin__", False)
    lama = importlib.import_module("spandrel.architectures.LaMa.__arch.LaMa")
    reason = _spandrel.torchvision_import_error()
    if reason is None:  # a working torchvision: spandrel uses the real one
        import torchvision.transforms.functional as tvf

        assert lama.rotate is tvf.rotate
    else:  # the stand-in: raises if ever called, and torchvision still fails as before
        with pytest.raises(RuntimeError, match="stand-in"):
            lama.rotate(torch.zeros(1, 1, 4, 4), 10.0)
        with pytest.raises(Exception):
            importlib.import_module("torchvision")


def test_missing_spandrel_says_how_to_install_it(monkeypatch, tmp_path):
    real_find_spec = importlib.util.find_spec
    monkeypatch.delitem(sys.modules, "spandrel", raising=False)
    monkeypatch.setattr(_spandrel.importlib.util, "find_spec",
                        lambda name, *a: None if name == "spandrel" else real_find_spec(name, *a))
    with pytest.raises(mb.ConfigError, match=r"hat needs the spandrel package.*pip install 'spandrel>=0.4' torch=="):
        _spandrel.import_spandrel("hat")
