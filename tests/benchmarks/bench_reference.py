"""Our baselines beside the authors' reference code, on the same inputs.

    MAXRF_REF_ROOT=/work/scratch/ref .venv/bin/python tests/benchmarks/bench_reference.py \\
        [--methods mmsr,ssgnet] [--cases sim-demo,tune] [--elements 2] [--epochs 20] \\
        [--seed 0] [--json out.jsonl]

The reference code is **not** part of this repository and is never copied into it. It is
loaded at run time from ``--ref-root`` (or the environment variable ``MAXRF_REF_ROOT``),
one folder per repository, each a plain checkout of the commit listed here:

============  ===================================  ==========================================  ===========
folder        repository                           commit                                      licence
============  ===================================  ==========================================  ===========
``MMSR``      github.com/palmdong/MMSR             d37aa38b8e2a59d34dfa9f7302cebcd8136bfccb    none stated
``SSGNet``    github.com/jsshin98/SSGNet           095b95761104d9a3a279abb98a97d2e49b8a6a5b    none stated
============  ===================================  ==========================================  ===========

(``git archive`` of those commits. Neither repository has a licence file, so their code may be
read and run but not redistributed: another reason it stays outside.) A method whose folder
is missing is skipped, with a message that names the folder.

Cases (4× block mean, which is ``F.avg_pool2d(·, 4)``, the operator both references train
with; the host's per-element normalisation to [0, 1]):

* ``sim-demo``: the registered 128² scene, its first ``--elements`` element maps.
* ``tune``: ``simulate("sim-flowers", seed=101, size=256)``, a 256² tuning scene that no table
  uses, its first ``--elements`` element maps.

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

Schedules are short (``--epochs 20`` by default, against the published 1000 for MMSR and
100 for SSGNet's upsampler). One MMSR step on a 128² map takes ~2–10 s on one shared CPU
core, and the point here is to show that the two codes compute the same thing. Starting
from the same weights, any difference in the forward pass, the loss or the optimiser
shows up at once.
"""
from __future__ import annotations

import argparse
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
    ap.add_argument("--elements", type=int, default=2, help="first N element maps (0: all)")
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--structure-iterations", type=int, default=50)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    if not args.ref_root:
        print("skipped: no reference code (set MAXRF_REF_ROOT or --ref-root to a folder holding "
              "MMSR/, SSGNet/ checkouts; see this file's docstring)")
        return 0
    import torch

    torch.set_num_threads(args.threads)
    root = Path(args.ref_root)
    sink = open(args.json, "a") if args.json else None
    print(f"{'method':8s} {'case':32s} {'ours':>7s} {'ref':>7s} {'Δ':>6s} {'ours vs ref':>11s}  seconds")
    for case in args.cases.split(","):
        prep = load_case(case, args.elements)
        for name in args.methods.split(","):
            folder, repo, commit = REPOS[name]
            if not (root / folder).is_dir():
                print(f"{name:8s} skipped: {root / folder} is missing (a checkout of {repo}@{commit})")
                continue
            t0 = time.perf_counter()
            if name == "mmsr":
                ours, ref = run_mmsr(prep, root, args.epochs, args.seed)
            else:
                ours, ref = run_ssgnet(prep, root, args.epochs, args.seed, args.structure_iterations)
            secs = time.perf_counter() - t0
            row = {"method": name, "case": prep.name, "elements": int(ours.shape[0]),
                   "epochs": args.epochs, "seed": args.seed, "repo": repo, "commit": commit,
                   "ours": psnr(ours, prep.truth), "ref": psnr(ref, prep.truth),
                   "ours_vs_ref": psnr(ours, ref), "seconds": secs}
            row["delta"] = row["ours"] - row["ref"]
            print(f"{name:8s} {prep.name:32s} {row['ours']:7.2f} {row['ref']:7.2f} {row['delta']:+6.2f} "
                  f"{row['ours_vs_ref']:11.2f}  {secs:7.0f}", flush=True)
            if sink:
                sink.write(json.dumps(row) + "\n")
                sink.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
