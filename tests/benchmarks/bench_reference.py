"""Our baselines beside the authors' reference code, on the same inputs.

    MAXRF_REF_ROOT=/path/to/ref .venv/bin/python tests/benchmarks/bench_reference.py \\
        [--methods mmsr,ssgnet] [--cases sim-demo,tune] [--elements 1] [--epochs 10] \\
        [--seed 0] [--json out.jsonl]

The reference code is **not** part of this repository and is never copied into it. It is
loaded at run time from ``--ref-root`` (or the environment variable ``MAXRF_REF_ROOT``),
one folder per repository, each a plain checkout of the commit listed here:

====================  ==========================================  ==========================================  ==============
folder                repository                                  commit                                      licence
====================  ==========================================  ==========================================  ==============
``MMSR``              github.com/palmdong/MMSR                    d37aa38b8e2a59d34dfa9f7302cebcd8136bfccb    none stated
``SSGNet``            github.com/jsshin98/SSGNet                  095b95761104d9a3a279abb98a97d2e49b8a6a5b    none stated
``CS2DIPs``           github.com/Ambitionfy/CS2DIPs               943a282f058cb8787dcbcec97348bedc45ce85cf    none stated
``hif-benchmarking``  github.com/magamig/hif-benchmarking         ef23570447a2d4c7244edd11f58f06a1ba82cd5b    MIT (the
                      (``methods/CSTF``, ``methods/LTTR``,                                                    benchmark)
                      ``methods/_CMS``: the authors' MATLAB code)
====================  ==========================================  ==========================================  ==============

(Files of those commits, e.g. ``git archive``. The first three have no licence file, so their
code may be read and run but not redistributed: another reason it stays outside.) The
MATLAB methods run in GNU Octave 7.3 from Debian (``apt-get install octave octave-image
liboctave-dev``; K-SVD's MEX files are compiled with ``mkoctfile`` on first use). A method whose folder
is missing is skipped, with a message that names the folder.

Cases (4× block mean, which is ``F.avg_pool2d(·, 4)``, the operator both references train
with; the host's per-element normalisation to [0, 1]):

* ``sim-demo``: the registered 128² scene, its first ``--elements`` element maps.
* ``tune``: ``simulate("sim-flowers", seed=101, size=256)``, a 256² tuning scene that no table
  uses, its first ``--elements`` element maps.

Methods: ``mmsr``, ``ssgnet`` (trained side by side), ``cs2dips`` (the network only: one
forward pass with the same weights), ``cstf``, ``lttr``, ``cms`` (MATLAB, in Octave; see each
``run_*_octave`` for its adaptations). ``cms`` prints three rows: ``cms`` (both on the
published 100 iterations), ``cms/same-clusters`` (ours given the reference's clusters) and
``cms/truth-stop`` (the reference stopping on the ground truth, as published); see
:func:`run_cms_octave`.

Printed per method and case: our PSNR, the reference's PSNR (dB, data range 1, against
the measured truth, the method's own output with no ``+P``), the PSNR of ours against the
reference's output, and Δ = ours − reference.

What is the same on both sides: the LR maps, the photograph, the operator, the schedule
(``--epochs`` steps, lr 2e-3, ×0.9998 every 5 steps, weight decay 5e-4 on the guide side,
L1), and the seed. The **initial weights** are the same too. For MMSR our network is
built in the reference's order, so ``torch.manual_seed(seed + 7919·k)`` before element
*k* gives both sides the same initial weights. This is checked before each run.

Adaptations of the reference (the smallest that make it run here):

* MMSR: none to its code. It is called once per element map, as ``inference.ipynb`` does,
  after ``torch.manual_seed(seed + 7919·k)`` (the reference sets no seed), with
  ``params = {scale 4, l1, adam, lr 2e-3, weights_regularizer [5e-4, 0, 0, 0], batch_size 1,
  epoch --epochs}``. The reference picks ``cuda:3`` when CUDA is visible. The benchmark
  hides CUDA (``CUDA_VISIBLE_DEVICES=""``) so both sides run on the CPU.
* SSGNet (the depth upsampler ``Depth_Upsampling/model``): its ``MMSR_net`` loads
  pretrained SSGNet weights from the placeholder path ``'path_to_pretrained_ssgnet'``.
  ``torch.load`` is redirected, for that path only, to the scene-structure network that
  *our* stage 1 trained on the photograph (``--structure-iterations`` steps). So both
  upsamplers get the same structure network. Our other initial weights (the 3×3
  reduction, the guide, source, modulation and prediction branches) are copied, parameter
  by parameter and in order, from the reference's freshly built ``MMSR_net``. The
  reference draws SSGNet's random initial weights before it loads the pretrained ones,
  so seeding alone does not align them. Stage 1 (SSGNet's unsupervised training on
  NYUv2) is not compared. The reference needs its dataset and trains for 100 epochs.

Schedules are short (``--epochs 10`` by default, against the published 1000 for MMSR and
100 for SSGNet's upsampler). One MMSR step on a 128² map took 10–30 s on one shared CPU
core, and the point here is to show that the two codes compute the same thing. Starting
from the same weights, any difference in the forward pass, the loss or the optimiser
shows up at once.
"""
from __future__ import annotations

import argparse
import hashlib
import contextlib
import importlib
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

import numpy as np  # noqa: E402

import maxrf_bench as mb  # noqa: E402

REPOS = {
    "mmsr": ("MMSR", "github.com/palmdong/MMSR", "d37aa38b8e2a59d34dfa9f7302cebcd8136bfccb"),
    "ssgnet": ("SSGNet", "github.com/jsshin98/SSGNet", "095b95761104d9a3a279abb98a97d2e49b8a6a5b"),
    "cs2dips": ("CS2DIPs", "github.com/Ambitionfy/CS2DIPs", "943a282f058cb8787dcbcec97348bedc45ce85cf"),
    "cstf": ("hif-benchmarking", "github.com/magamig/hif-benchmarking",
             "ef23570447a2d4c7244edd11f58f06a1ba82cd5b"),
    "cms": ("hif-benchmarking", "github.com/magamig/hif-benchmarking",
            "ef23570447a2d4c7244edd11f58f06a1ba82cd5b"),
    "lttr": ("hif-benchmarking", "github.com/magamig/hif-benchmarking",
             "ef23570447a2d4c7244edd11f58f06a1ba82cd5b"),
}
SEED_STRIDE = 7919  # _guided_upsampler.super_resolve: torch.manual_seed(seed + 7919 · group)


def psnr(a, b) -> float:
    d = (np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2
    return float(-10 * np.log10(d.mean()))


def load_case(case: str, elements: int):
    if case == "sim-demo":
        name, load, _ = mb.resolve_dataset("sim-demo")
        scan = load()
    elif case == "tune":
        from maxrf_bench_datasets.simulator import simulate

        scan = simulate("sim-flowers", seed=101, size=256)
        name = "sim-flowers[seed=101,size=256]"
    else:
        raise mb.ConfigError(f"unknown case {case!r}; expected sim-demo or tune")
    if elements:
        scan = scan.isel(element=slice(0, elements))
    return mb.prepare_scan(scan, name=name, scale=4)


@contextlib.contextmanager
def reference_package(folder: Path, package: str):
    """Import ``package`` from ``folder`` (both references call theirs ``model``)."""
    def forget():
        for key in [k for k in sys.modules if k == package or k.startswith(package + ".")]:
            del sys.modules[key]

    forget()
    sys.path.insert(0, str(folder))
    try:
        yield importlib.import_module(package)
    finally:
        sys.path.remove(str(folder))
        forget()


def copy_by_order(src: list, dst) -> None:
    """Copy the tensors ``src`` into the parameters ``dst`` in order; shapes must match."""
    import torch

    sp, dp = src, list(dst)
    if len(sp) != len(dp) or any(a.shape != b.shape for a, b in zip(sp, dp)):
        raise SystemExit(f"parameter lists differ: {len(sp)} vs {len(dp)} tensors")
    with torch.no_grad():
        for a, b in zip(sp, dp):
            b.copy_(a)


def same_parameters(a, b) -> float:
    return max(float((x.detach() - y.detach()).abs().max()) for x, y in zip(a.parameters(), b.parameters()))


def ref_params(epochs: int) -> dict:
    return {"scale": 4, "loss": "l1", "optim": "adam", "lr": 2e-3,
            "weights_regularizer": [5e-4, 0, 0, 0], "batch_size": 1, "epoch": epochs}


# --- MMSR ----------------------------------------------------------------------------------

def run_mmsr(prep, root: Path, epochs: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    import torch

    from maxrf_bench_plugins import _guided_upsampler as gu

    method = mb.get_method("mmsr")
    ours = method.run(prep.inputs(seed=seed, device="cpu"), **{**method.params("paper"), "epochs": epochs})
    ours = np.asarray(getattr(ours, "values", ours))
    rgb = np.asarray(prep.rgb.values, np.float32)
    lr = np.asarray(prep.maps_lr.values, np.float32)
    ref = np.empty_like(ours)
    with reference_package(root / "MMSR", "model"):
        main = importlib.import_module("model.main")
        network = importlib.import_module("model.network")
        for k in range(lr.shape[0]):
            torch.manual_seed(seed + SEED_STRIDE * k)
            theirs = network.MMSR_net(weights_regularizer=[5e-4, 0, 0, 0])
            torch.manual_seed(seed + SEED_STRIDE * k)
            gap = same_parameters(theirs, gu.MutualModulationNet(3))
            if gap != 0:
                raise SystemExit(f"MMSR: initial weights differ by {gap} at element {k}")
            torch.manual_seed(seed + SEED_STRIDE * k)
            ref[k] = main.MMSR(guide_img=rgb.copy(), source_img=lr[k].copy(), params=ref_params(epochs))
    return ours, ref


# --- CS2DIPs (the network, one forward pass) -------------------------------------------------

@contextlib.contextmanager
def mmcv_stand_in():
    """``mmcv.ops.DeformConv2dPack`` for the reference's ``import``: mmcv does not install
    beside this CPU torch. The stand-in is our :class:`DeformConv2d` (same parameters, in
    the same order: weight, offset conv weight and bias; zero-initialised offsets), so the
    deformable convolution itself is *not* compared here (tests/test_baselines_cs2dips.py
    checks it against a direct loop)."""
    import types

    from maxrf_bench_plugins.cs2dips.network import DeformConv2d

    class DeformConv2dPack(DeformConv2d):
        def __init__(self, cin, cout, kernel_size=3, stride=1, padding=1, **kw):
            k = kernel_size[0] if isinstance(kernel_size, tuple) else kernel_size
            st = stride[0] if isinstance(stride, tuple) else stride
            super().__init__(cin, cout, k, padding=padding, stride=st)

    mmcv, ops = types.ModuleType("mmcv"), types.ModuleType("mmcv.ops")
    ops.DeformConv2dPack = DeformConv2dPack
    mmcv.ops = ops
    saved = {k: sys.modules.get(k) for k in ("mmcv", "mmcv.ops", "common", "utils")}
    sys.modules.update({"mmcv": mmcv, "mmcv.ops": ops})
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                sys.modules.pop(k, None)
            else:
                sys.modules[k] = v


def execution_order(net, *inputs) -> list:
    """The modules that own parameters, in the order a forward pass first calls them."""
    import torch

    order, seen, hooks = [], set(), []
    for name, mod in net.named_modules():
        if any(True for _ in mod.parameters(recurse=False)):
            def hook(m, i, o, name=name):
                if name not in seen:
                    seen.add(name)
                    order.append(m)
            hooks.append(mod.register_forward_hook(hook))
    with torch.no_grad():
        net(*inputs)
    for h in hooks:
        h.remove()
    return order


def run_cs2dips_forward(prep, root: Path, seed: int, channels: int):
    """The reference's ``CGDIP`` and our ``CS2DIP`` with the same weights on the same
    inputs (LR cube, photograph, the reference's own ``get_inp`` noise): one forward pass in
    training mode (batch norm on batch statistics, as every training step). Weights are
    mapped module by module in the order a forward pass calls them, each module to the first
    unmapped one of ours with the same parameter shapes. A wrong mapping would not give the
    same output."""
    import math

    import torch

    from maxrf_bench_plugins.cs2dips.network import CS2DIP

    lr = torch.from_numpy(np.asarray(prep.maps_lr.values, np.float32))
    rgb = torch.from_numpy(np.asarray(prep.rgb.values, np.float32))[None]
    b, h, w = lr.shape
    hh, ww = rgb.shape[-2:]
    x_temp = lr[None].permute(0, 2, 3, 1).reshape(1, h * w, b)   # demo.py's X_temp layout
    with mmcv_stand_in(), reference_package(root / "CS2DIPs" / "modules", "model") as model:
        utils = importlib.import_module("utils")
        real_cuda = torch.Tensor.cuda
        torch.Tensor.cuda = lambda self, *a, **k: self              # get_inp calls .cuda()
        try:
            torch.manual_seed(seed)
            ref = model.CGDIP(num_input_channels1d=h * w, num_inputz_channels1d=256,
                              num_input_channels2d=3, num_inputz_channels2d=10,
                              data_shape=[b, hh, ww], num_output_channels=35,
                              num_channels=channels, num_channels_skip=8)
            g1 = utils.get_inp([1, 256, math.ceil(b / 2**3)])
            g2 = utils.get_inp([1, 10, math.ceil(hh / 2**5), math.ceil(ww / 2**5)])
        finally:
            torch.Tensor.cuda = real_cuda
    ours = CS2DIP(b, 3, h * w, (hh, ww), rank=35, channels=channels, skip_channels=8,
                  spatial_noise_channels=10, spectral_noise_channels=256, spatial_levels=5,
                  spectral_levels=3)
    ref.train()
    ours.train()
    args = (x_temp, g1.detach(), rgb, g2.detach())
    theirs, mine = execution_order(ref, *args), execution_order(ours, *args)
    used: set[int] = set()
    with torch.no_grad():
        for rm in theirs:
            shapes = [p.shape for p in rm.parameters(recurse=False)]
            j = next(j for j, om in enumerate(mine)
                     if j not in used and [p.shape for p in om.parameters(recurse=False)] == shapes)
            used.add(j)
            for a, c in zip(rm.parameters(recurse=False), mine[j].parameters(recurse=False)):
                c.copy_(a)
        z_ref = ref(*args)[0].numpy()
        z_ours = ours(*args)[0].numpy()
    return z_ours, z_ref


# --- CSTF (MATLAB, run by GNU Octave) -----------------------------------------------------

#: The Octave driver: the steps of hif-benchmarking's ``CSTF_wrapper.m`` with the
#: adaptations of :func:`run_cstf_octave`, then the reference's own ``CSTF_FUS``.
CSTF_DRIVER = r"""
pkg load image
addpath(genpath(fullfile(ROOT, 'auxiliary', 'globals')));
addpath(genpath(fullfile(ROOT, 'methods', 'CSTF')));
addpath(SHIM);
rand('seed', SEED); randn('seed', SEED); rand('state', SEED); randn('state', SEED);
d = load(IN);
[m, n, L] = size(d.hsi); [M, N, l] = size(d.msi); sf = M / m; s0 = sf / 2;
BW1 = psf2otf(ones(sf, 1) / sf, [M 1]);   % block mean (the wrapper: Gaussian 7 taps, sigma 2)
BH1 = psf2otf(ones(sf, 1) / sf, [N 1]);
par1.W = M; par1.H = N; par1.S = L; par1.lambda = 1e-5;
sri = CSTF_FUS(d.hsi, d.msi, d.F, BW1, BH1, sf, par1, s0, nan);
save('-mat7-binary', OUT, 'sri');
"""

#: The same for hif-benchmarking's ``LTTR_wrapper.m`` and the authors' ``LTTR_FUS``. The
#: reference samples the blurred image at ``1:sf:end``; the block mean is then the circular
#: convolution with a box on rows/columns {1, M−sf+2, …, M} (checked: max difference 2e-16).
LTTR_DRIVER = r"""
pkg load image
addpath(genpath(fullfile(ROOT, 'auxiliary', 'globals')));
addpath(genpath(fullfile(ROOT, 'methods', 'LTTR')));
addpath(PATCHED);
rand('seed', SEED); randn('seed', SEED); rand('state', SEED); randn('state', SEED);
d = load(IN);
[m, n, L] = size(d.hsi); [M, N, l] = size(d.msi); sf = M / m;
k = zeros(M, N); k([1, M-sf+2:M], [1, N-sf+2:N]) = 1 / sf^2;
fft_B = fft2(k);                  % block mean (the wrapper: Gaussian 7 x 7, sigma 2)
sri = LTTR_FUS(d.hsi, d.msi, d.F, double(d.K), 1e-2, fft_B, sf, nan);
save('-mat7-binary', OUT, 'sri');
"""

#: hif-benchmarking's copy of the CMS code (``methods/_CMS``, the authors' ``runCMS.m`` and
#: ``SRLRTS_sm.m``). Its ``Uniform_blur`` (box of sf × sf, sampled at ``floor(sf/2)``) is
#: the block mean. Its stopping rule reads the ground truth (``Evaluate(RZ2d, Z)``), so
#: the truth is passed as the reference expects. ``SRLRTS_sm`` is run from a copy with
#: the lines of :data:`CMS_PATCHES` changed: it returns the cube it scores (see there) and
#: writes its iteration count and clusters to ``cms_info.mat``.
CMS_DRIVER = r"""
pkg load image
addpath(genpath(fullfile(ROOT, 'methods', '_CMS', 'Utilities')));
addpath(PATCHED);
rand('seed', SEED); randn('seed', SEED); rand('state', SEED); randn('state', SEED);
d = load(IN);
[m, n, L] = size(d.hsi); [M, N, l] = size(d.msi); sf = M / m; sz = [M N];
par = ParSet_new(sf, sz, 'Uniform_blur');
par.iter = 100; par.mu = 4e-4; par.rho = 1.05;   % ParSet_new's sf = 8 values: it has none for 4
par.nCluster = double(d.K);
X = loadHSI(d.hsi); Y = loadHSI(d.msi); RZ2d = loadHSI(d.truth);
H = create_H(sz, sf); P = d.F;
[psnr_ref, ~, ~, ~, sri] = SRLRTS_sm(RZ2d, [M N L], sf, par, X, Y, H, P, 'Uniform_blur');
load('cms_info.mat');
labels = zeros(1, numel([index{:}]));
for i = 1:numel(index), labels(index{i}) = i; end
iterations = t;
save('-mat7-binary', OUT, 'sri', 'psnr_ref', 'iterations', 'labels');
"""

_CMS_FILE = "hif-benchmarking/methods/_CMS/Utilities/SRLRTS_sm.m"
#: The changes the benchmark makes to ``SRLRTS_sm.m`` (in a copy), by line number at the
#: recorded commit, each checked by a hash of that line (so no reference text is quoted here). (1) At the end the
#: reference back-projects ``Z`` (the last iterate) and scores that, but returns ``Z3d``,
#: which its loop refreshes only *after* the stopping test: when the ground-truth rule
#: breaks the loop, the returned cube is the iterate before the scored one, and it is not
#: back-projected. The copy returns the scored cube. (2) It saves ``t`` (its iteration
#: count) and ``index`` (its k-means++ clusters) for the report and the same-clusters check.
#: (3) Only with ``stop_on_truth = False``: the ground-truth rule is switched off, so it runs
#: its full schedule (``par.iter = 100``).
CMS_PATCHES = (
    (_CMS_FILE, 89, "f3f56c9a1674", "after",
     "Z3d = ReshapeTo3D(Z,rzSize);\nsave('-mat7-binary', 'cms_info.mat', 't', 'index');"),
)
#: Resetting the stall counter just before the ground-truth test (line 77) never lets it break.
CMS_NO_TRUTH_STOP = (_CMS_FILE, 77, "023b6d1a91f8", "before", "    to = 0;")

IPERMUTE_SHIM = """function Y = ipermute(X, order)
% Octave shim written by bench_reference.py (not reference code): Octave's builtin
% ipermute does not call a class's overloaded permute, as MATLAB's does.
inv(order) = 1:numel(order);
Y = permute(X, inv);
"""


def build_octave_mex(root: Path) -> None:
    """Compile the reference's MEX sources (K-SVD's OMP) with ``mkoctfile --mex`` once, as
    its ``private/make.m`` lists them; the outputs go beside the sources, in the scratch copy."""
    import subprocess

    private = root / "hif-benchmarking" / "methods" / "CSTF" / "ImprovedDL" / "private"
    omp = ["mexutils.c", "ompcore.c", "omputils.c", "myblas.c", "ompprof.c"]
    jobs = {name: [f"{name}.c"] for name in ("addtocols", "collincomb", "rowlincomb", "im2colstep", "col2imstep")}
    jobs["sprow"] = ["sprow.c", "mexutils.c"]
    jobs["ompmex"] = ["ompmex.c", *omp]
    jobs["omp2mex"] = ["omp2mex.c", *omp]
    for name, sources in jobs.items():
        if not (private / f"{name}.mex").exists():
            subprocess.run(["mkoctfile", "--mex", *sources, "-o", f"{name}.mex"], cwd=private, check=True)


def run_octave(driver: str, data, root: Path, seed: int, timeout: int, extra=None,
               patches=(), info: dict | None = None) -> np.ndarray:
    """Run ``driver`` in GNU Octave on the fusion problem ``data``; the reference's output
    ``(B, H, W)``. ``patches``: ``(file under root, line number, sha256 prefix of that line,
    "before" | "after" | "replace", our lines)``: a copy of that reference file so changed goes to a temporary folder ahead of the
    reference on Octave's path (the checkout is not touched). ``info``: filled with the
    other variables the driver saved."""
    import subprocess
    import tempfile

    import scipy.io

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "shim" / "@tensor").mkdir(parents=True)
        (tmp / "shim" / "@tensor" / "ipermute.m").write_text(IPERMUTE_SHIM)
        (tmp / "patched").mkdir()
        texts: dict[str, list[str]] = {}
        for rel, line, digest, how, new in sorted(patches, key=lambda p: -p[1]):
            lines = texts.setdefault(rel, (root / rel).read_text().splitlines())
            found = lines[line - 1].strip() if line <= len(lines) else ""
            if hashlib.sha256(found.encode()).hexdigest()[:12] != digest:
                raise RuntimeError(f"{rel}: line {line} is not the one this benchmark adapts "
                                   f"(sha256 {digest}…); is the checkout at the recorded commit?")
            at = {"before": line - 1, "after": line, "replace": line - 1}[how]
            lines[at:line if how == "replace" else at] = new.split("\n")
        for rel, lines in texts.items():
            (tmp / "patched" / Path(rel).name).write_text("\n".join(lines) + "\n")
        scipy.io.savemat(tmp / "in.mat", {"hsi": np.moveaxis(data.x_lr, 0, -1).astype(np.float64),
                                          "msi": np.moveaxis(data.msi, 0, -1).astype(np.float64),
                                          "F": np.asarray(data.response, np.float64), **(extra or {})})
        head = (f"ROOT = '{root / 'hif-benchmarking'}'; SHIM = '{tmp / 'shim'}'; SEED = {seed};\n"
                f"PATCHED = '{tmp / 'patched'}';\n"
                f"IN = '{tmp / 'in.mat'}'; OUT = '{tmp / 'out.mat'}';\n")
        (tmp / "driver.m").write_text(head + driver)
        proc = subprocess.run(["octave", "--no-gui", "--quiet", str(tmp / "driver.m")], cwd=tmp,
                              capture_output=True, text=True, timeout=timeout)
        if not (tmp / "out.mat").exists():
            lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("error")] or ["?"]
            raise RuntimeError("octave failed: " + lines[0])
        out = scipy.io.loadmat(tmp / "out.mat")
        if info is not None:
            info.update({k: v for k, v in out.items() if not k.startswith("__") and k != "sri"})
        if "psnr_ref" in out:
            print(f"         (the reference's own final PSNR: {float(out['psnr_ref'].squeeze()):.2f} dB)")
        return np.moveaxis(out["sri"], -1, 0)


def run_lttr_octave(prep, root: Path, seed: int, timeout: int):
    """Our ``lttr`` (paper preset, ``weight_rgb = false``) and the authors' ``LTTR_FUS.m``
    (through hif-benchmarking's wrapper steps) in GNU Octave, same LR maps, photograph and
    ``R``. Adaptations of the reference: the blur (box in place of the wrapper's Gaussian,
    aligned to its sampling), ``R``/offset from our NNLS (as for CSTF), and the number of
    clusters ``K``: ours (``patches_per_cluster = 101`` → ``K`` from the patch count) in place
    of the wrapper's fixed ``K = 3``, so both cluster alike. Nothing else changes."""
    from maxrf_bench_plugins._fusion import fusion_data, n_patches, scaled_count

    method = mb.get_method("lttr")
    params = {**method.params("paper"), "weight_rgb": False}
    inputs = prep.inputs(seed=seed)
    ours = method.run(inputs, **params)
    ours = np.asarray(getattr(ours, "values", ours))
    data = fusion_data(inputs, weight_rgb=False)
    k = scaled_count(n_patches(data.hr_shape, int(params["patch"]), int(params["step"])),
                     float(params["patches_per_cluster"]))
    # a progress line in hif-benchmarking's copy uses MATLAB string concatenation
    # ("Iter " + int2str(i)), which Octave evaluates as character-code addition
    patch = ("hif-benchmarking/methods/LTTR/LTTR_file/LTTR_FUS.m", 62, "6d2f06b19622", "replace",
             "    disp(['Iter ' int2str(i)]);")
    return ours, run_octave(LTTR_DRIVER, data, root, seed, timeout, {"K": float(k)}, [patch])


def cms_labels_as_ours(labels: np.ndarray, shape: tuple[int, int], patch: int, step: int) -> np.ndarray:
    """The reference's cluster of each patch (``Im2Patch3D`` order: rows fastest, 1-based)
    in our patch order (``_fusion.extract_patches``: columns fastest, 0-based). Both take
    the same patches when ``(size − patch)`` is a multiple of ``step`` (checked)."""
    ny, nx = ((n - patch) // step + 1 for n in shape)
    if any((n - patch) % step for n in shape) or labels.size != ny * nx:
        raise SystemExit(f"cms: patch grids differ ({labels.size} labels for {ny}×{nx} patches)")
    return np.asarray(labels, int).reshape(nx, ny).T.ravel() - 1


def run_cms_octave(prep, root: Path, seed: int, timeout: int) -> dict:
    """Our ``cms`` (paper preset, ``weight_rgb = false``) and hif-benchmarking's CMS code in
    GNU Octave, same LR maps, photograph and ``R``. Adaptations of the reference: ``R`` and
    offset from our NNLS, the cluster count ours (``patches_per_cluster = 217``) instead of
    its fixed 300, ``iter/mu/rho`` for scale 4 (its ``ParSet_new`` only has 8, 16, 32; the
    scale-8 values, which are ours too), it is given the truth, which its stopping rule
    reads (ours stops on the data only), and the lines of :data:`CMS_PATCHES`.

    Three comparisons (rows ``cms``, ``cms/same-clusters``, ``cms/truth-stop``):

    * ``cms``: the reference runs its full schedule (100 iterations: the ground-truth rule
      is switched off, :data:`CMS_NO_TRUTH_STOP`), ours its ``paper`` preset as registered
      (data-only stop, at most 100). Each clusters with its own k-means++.
    * ``/same-clusters``: ours again, given the reference's clusters (``kmeans``
      replaced by them), without our memory cap (``max_cluster``) and without early stop
      (``tol = 0``): the same computation, so ours vs ref shows the arithmetic left
      (the reference's PCG to 1e-3 against our exact solve).
    * ``/truth-stop``: the reference as published, stopping on the ground-truth PSNR,
      against ours as registered.
    """
    from maxrf_bench_plugins import cms as cms_plugin
    from maxrf_bench_plugins._fusion import fusion_data, n_patches, scaled_count

    method = mb.get_method("cms")
    params = {**method.params("paper"), "weight_rgb": False}
    inputs = prep.inputs(seed=seed)
    ours = np.asarray(getattr(out := method.run(inputs, **params), "values", out))
    data = fusion_data(inputs, weight_rgb=False)
    k = scaled_count(n_patches(data.hr_shape, int(params["patch"]), int(params["step"])),
                     float(params["patches_per_cluster"]))
    extra = {"K": float(k), "truth": np.moveaxis(np.asarray(prep.truth, np.float64), 0, -1)}
    rows = {}
    full: dict = {}
    ref = run_octave(CMS_DRIVER, data, root, seed, timeout, extra, (*CMS_PATCHES, CMS_NO_TRUTH_STOP), full)
    rows[""] = (ours, ref, f"reference {int(full['iterations'].squeeze())} iterations, no truth stop")
    labels = cms_labels_as_ours(full["labels"].ravel(), data.hr_shape, int(params["patch"]), int(params["step"]))
    real_kmeans = cms_plugin.kmeans
    cms_plugin.kmeans = lambda feats, count, rng: labels
    try:
        same = method.run(inputs, **{**params, "max_cluster": labels.size, "tol": 0.0})
    finally:
        cms_plugin.kmeans = real_kmeans
    rows["/same-clusters"] = (np.asarray(getattr(same, "values", same)), ref,
                              "ours given the reference's clusters, no cap, 100 iterations")
    stop: dict = {}
    ref_stop = run_octave(CMS_DRIVER, data, root, seed, timeout, extra, CMS_PATCHES, stop)
    rows["/truth-stop"] = (ours, ref_stop, f"reference stops on the truth after "
                           f"{int(stop['iterations'].squeeze())} iterations")
    return rows


def run_cstf_octave(prep, root: Path, seed: int, timeout: int):
    """Our ``cstf`` (paper preset, ``weight_rgb = false``: the paper's unit RGB weight) and
    hif-benchmarking's ``CSTF_FUS.m`` in GNU Octave, on the same LR maps, the same
    offset-corrected photograph and the same response ``R``.

    Adaptations of the reference: (1) the wrapper's Gaussian blur (7 taps, σ = 2) is
    replaced by the 4-tap box, which with the wrapper's own sampling offset ``s0 = sf/2``
    is exactly the block mean (checked: max difference 1e-16); (2) ``R`` and the offset
    come from our NNLS estimate (``_fusion.fusion_data``), not from the wrapper's
    ``estR`` (quadprog on a Gaussian-downsampled photograph), so both sides fuse the same
    photograph with the same response; (3) Octave: packages ``image`` and ``optim``, the
    MEX files compiled with ``mkoctfile``, and a 4-line ``@tensor/ipermute`` shim written
    to a temporary folder. Nothing else in the reference changes. Both draw random
    numbers (K-SVD's and VCA's initialisation) from their own generators."""
    from maxrf_bench_plugins._fusion import fusion_data

    method = mb.get_method("cstf")
    inputs = prep.inputs(seed=seed)
    ours = method.run(inputs, **{**method.params("paper"), "weight_rgb": False})
    ours = np.asarray(getattr(ours, "values", ours))
    data = fusion_data(inputs, weight_rgb=False)
    build_octave_mex(root)
    ref = run_octave(CSTF_DRIVER, data, root, seed, timeout)
    return ours, ref


# --- SSGNet --------------------------------------------------------------------------------

def run_ssgnet(prep, root: Path, epochs: int, seed: int, structure_iterations: int):
    import copy

    import torch

    from maxrf_bench_plugins import _guided_upsampler as gu
    from maxrf_bench_plugins.mmsr import schedule
    from maxrf_bench_plugins.ssgnet import DEFAULTS, trained_structure
    from maxrf_bench_plugins.ssgnet.structure import StructureGuide

    p = {**DEFAULTS, "epochs": epochs, "structure_iterations": structure_iterations,
         "structure_lr": 1e-3}
    rgb = np.asarray(prep.rgb.values, np.float32)
    lr = np.asarray(prep.maps_lr.values, np.float32)
    structure = trained_structure(rgb, p, seed, torch.device("cpu"))
    state = {"module." + k: v.detach().clone() for k, v in structure.state_dict().items()}
    real_load = torch.load

    def fake_load(path, *a, **kw):
        if path == "path_to_pretrained_ssgnet":
            return {"state_dict": state}
        return real_load(path, *a, **kw)

    ref = np.empty((lr.shape[0], *rgb.shape[1:]), np.float32)
    inits = []
    with reference_package(root / "SSGNet" / "Depth_Upsampling", "model"):
        main = importlib.import_module("model.main")
        network = importlib.import_module("model.network")
        torch.load = fake_load
        try:
            for k in range(lr.shape[0]):
                torch.manual_seed(seed + SEED_STRIDE * k)
                inits.append([q.detach().clone() for n, q in network.MMSR_net().named_parameters()
                              if not n.startswith("branch_ev.")])
                torch.manual_seed(seed + SEED_STRIDE * k)
                with contextlib.redirect_stdout(open(os.devnull, "w")):
                    ref[k] = main.MMSR(rgb.copy(), lr[k].copy(), params=ref_params(epochs))[0]
        finally:
            torch.load = real_load

    made = iter(inits)

    def make_net():
        guide = StructureGuide(copy.deepcopy(structure).train())
        net = gu.MutualModulationNet(3, structure=guide, structure_channels=guide.channels,
                                     structure_radius=guide.radius)
        copy_by_order(next(made), [q for n, q in net.named_parameters()
                                   if not n.startswith("structure.structure.")])
        return net

    prob = gu.make_problem(lr, gu.zscore_guide(rgb), prep.operator, torch.device("cpu"))
    ours = gu.super_resolve(prob, make_net, schedule(p), share_elements=False, seed=seed)
    return ours, ref


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ref-root", default=os.environ.get("MAXRF_REF_ROOT"))
    ap.add_argument("--methods", default="mmsr,ssgnet")
    ap.add_argument("--cases", default="sim-demo,tune")
    ap.add_argument("--elements", type=int, default=1, help="first N element maps (0: all)")
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--structure-iterations", type=int, default=20)
    ap.add_argument("--octave-timeout", type=int, default=3600)
    ap.add_argument("--cs2dips-channels", type=int, default=256, help="the reference's num_channels")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", default=None)
    ap.add_argument("--save", default=None, metavar="DIR",
                    help="keep both outputs, DIR/METHOD-CASE.npz (ours, ref, truth)")
    args = ap.parse_args(argv)
    if not args.ref_root:
        print("skipped: no reference code (set MAXRF_REF_ROOT or --ref-root to a folder holding "
              "MMSR/, SSGNet/, CS2DIPs/, hif-benchmarking/ checkouts; see this file's docstring)")
        return 0
    import torch

    torch.set_num_threads(args.threads)
    root = Path(args.ref_root)
    sink = open(args.json, "a") if args.json else None
    print(f"{'method':18s} {'case':32s} {'ours':>7s} {'ref':>7s} {'Δ':>6s} {'ours vs ref':>11s}  seconds")
    for case in args.cases.split(","):
        prep = load_case(case, args.elements)
        for name in args.methods.split(","):
            folder, repo, commit = REPOS[name]
            if not (root / folder).is_dir():
                print(f"{name:8s} skipped: {root / folder} is missing (a checkout of {repo}@{commit})")
                continue
            t0 = time.perf_counter()
            if name == "cs2dips":
                try:
                    ours, ref = run_cs2dips_forward(prep, root, args.seed, args.cs2dips_channels)
                except Exception as exc:  # noqa: BLE001 - reported: the reference fails on this input
                    print(f"{name:8s} {prep.name:32s} the reference fails: {type(exc).__name__}: "
                          f"{str(exc).splitlines()[0][:120]}")
                    continue
                secs = time.perf_counter() - t0
                close = psnr(ours, ref) if np.any(ours != ref) else float("inf")
                print(f"{name:8s} {prep.name:32s} {'—':>7s} {'—':>7s} {'—':>6s} {close:11.2f}  {secs:7.0f}"
                      f"   (one forward pass, untrained, same weights; max |Δ| "
                      f"{float(np.abs(ours - ref).max()):.2e} of {float(np.abs(ref).max()):.2f})", flush=True)
                if sink:
                    sink.write(json.dumps({"method": name, "case": prep.name, "check": "forward",
                                           "channels": args.cs2dips_channels, "ours_vs_ref": close,
                                           "max_abs_diff": float(np.abs(ours - ref).max()),
                                           "repo": repo, "commit": commit}) + "\n")
                continue
            if name in ("cstf", "lttr", "cms"):
                run = {"cstf": run_cstf_octave, "lttr": run_lttr_octave, "cms": run_cms_octave}[name]
                try:
                    result = run(prep, root, args.seed, args.octave_timeout)
                except Exception as exc:  # noqa: BLE001 - reported: the reference does not run here
                    print(f"{name:8s} {prep.name:32s} the reference does not run: {type(exc).__name__}: "
                          f"{str(exc).splitlines()[0][:160]}", flush=True)
                    continue
            elif name == "mmsr":
                result = run_mmsr(prep, root, args.epochs, args.seed)
            else:
                result = run_ssgnet(prep, root, args.epochs, args.seed, args.structure_iterations)
            secs = time.perf_counter() - t0
            # a pair (ours, ref), or {row suffix: (ours, ref, note)} for several comparisons
            rows = result if isinstance(result, dict) else {"": (*result, "")}
            for suffix, (ours, ref, note) in rows.items():
                report(name + suffix, case, prep, ours, ref, secs, note, args, repo, commit, sink)
    return 0


def report(name, case, prep, ours, ref, secs, note, args, repo, commit, sink) -> None:
    """One printed row (and JSON line, and saved outputs) for a comparison."""
    if args.save:
        Path(args.save).mkdir(parents=True, exist_ok=True)
        np.savez_compressed(Path(args.save) / f"{name.replace('/', '-')}-{case}.npz", ours=ours, ref=ref,
                            truth=prep.truth, lr=prep.maps_lr.values)
    row = {"method": name, "case": prep.name, "elements": int(ours.shape[0]),
           "epochs": args.epochs, "seed": args.seed, "repo": repo, "commit": commit,
           "ours": psnr(ours, prep.truth), "ref": psnr(ref, prep.truth),
           "ours_vs_ref": psnr(ours, ref), "seconds": secs, "note": note,
           "ref+P": psnr(prep.operator.project(ref, prep.maps_lr.values), prep.truth),
           "ours+P": psnr(prep.operator.project(ours, prep.maps_lr.values), prep.truth)}
    row["delta"] = row["ours"] - row["ref"]
    print(f"{name:18s} {prep.name:32s} {row['ours']:7.2f} {row['ref']:7.2f} {row['delta']:+6.2f} "
          f"{row['ours_vs_ref']:11.2f}  {secs:7.0f}   (+P: ours {row['ours+P']:.2f}, "
          f"reference {row['ref+P']:.2f}{'; ' + note if note else ''})", flush=True)
    if sink:
        sink.write(json.dumps(row) + "\n")
        sink.flush()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
