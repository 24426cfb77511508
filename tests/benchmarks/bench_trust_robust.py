"""Robustness of ``ctx`` to a misregistered photograph, and the per-element gate (issue 22
item 3, ours), on tuning scenes no table uses.

For each scene (``PRESET:SEED:SIZE``, simulated on the fly; a table scene with seed 0 is
refused), each RMS misregistration amplitude (the host's model, ``run --misregister``,
displacement seed 0) and each variant (``NAME=key:value,key:value`` of ``proposed``
parameters on top of the ``ctx`` preset), trains the generator (method seeds ``--seeds``, default 0; the
trained generator is kept under ``--work`` and reused by a rerun) and prints per run:
overall PSNR (dB, measured truth, the registered ``psnr`` metric), PSNR and photo-leak
means over the hidden group (``hidden_share ≥ 0.3``) and over the visible group.  Without
``--iterations`` the full ``ctx`` schedule (5000 + 200) runs.  ``--json`` writes every
figure.  Since session 8 the ``ctx`` preset registers the photograph (``register = "lr"``):
the variant ``ctx=`` is that; ``plain=register:none`` is ``ctx`` without it (the variant
called ``ctx`` in the session-7 commands of docs/trust.md).  Each run's maps are kept as
``sr.npy`` in its work folder, so runs can be compared bit for bit.  Example (the figures
in docs/trust.md)::

    .venv/bin/python tests/benchmarks/bench_trust_robust.py \\
        --scene sim-virgin:102:256 --scene sim-flowers:101:256 --amplitudes 0,2 \\
        --variant ctx= --variant warp1=warp_augment:1 --variant gate=gate:lr
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

import maxrf_bench as mb
from maxrf_bench.misregister import misregistered

TABLE_SCENES = {"sim-demo", "sim-flowers", "sim-virgin", "sim-isabel"}
HIDDEN = 0.3


def parse_value(text: str):
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return {"true": True, "false": False}.get(text.lower(), text)


def parse_variant(text: str) -> tuple[str, dict]:
    name, _, rest = text.partition("=")
    params = {}
    for item in filter(None, rest.split(",")):
        k, _, v = item.partition(":")
        params[k] = parse_value(v)
    return name, params


def scene_prep(spec: str):
    from maxrf_bench_datasets.simulator.presets import simulate

    preset, seed, size = spec.split(":")
    if preset in TABLE_SCENES and int(seed) == 0:
        raise SystemExit(f"{spec}: a results-table scene; tune on another seed")
    scan = simulate(preset, int(seed), size=int(size))
    return mb.prepare_scan(scan, name=f"{preset}-{seed}", scale=4), np.asarray(scan["hidden_share"].values)


def scores(sr: np.ndarray, prep, hidden: np.ndarray) -> dict:
    res = mb.evaluate(sr, prep, ["psnr", "photo_leak"])["measured"]
    els = prep.elements
    psnr = np.array([res["psnr"][e] for e in els])
    leak = np.array([res["photo_leak"][e] for e in els])
    hid = hidden >= HIDDEN
    return {"psnr": float(res["psnr"]["all"]),
            "psnr_hidden": float(psnr[hid].mean()), "psnr_visible": float(psnr[~hid].mean()),
            "leak_hidden": float(leak[hid].mean()), "leak_visible": float(leak[~hid].mean()),
            "per_element": {e: {"psnr": float(p), "leak": float(q), "hidden_share": float(h)}
                            for e, p, q, h in zip(els, psnr, leak, hidden)}}


def field_error(work: Path, prep, amp: float) -> dict:
    """RMS of the registration the run estimated (``register = "lr"``) and of its residual
    against the known misregistration: the estimate ``e`` should be ``−d`` (the photograph is
    sampled at ``u + e``, the warp showed it at ``u + d``)."""
    from maxrf_bench_plugins.proposed.photo_prep import lr_to_hr

    meta = json.loads((work / "generator.json").read_text()) if (work / "generator.json").exists() else {}
    training = (meta.get("meta") or meta).get("training") or {}
    if "register_global" not in training:
        return {}
    shape = tuple(prep.rgb.shape[-2:])
    lr = training.get("register_field_lr")  # None: not significant, the photograph as given
    e = np.zeros((2,) + shape) if lr is None else lr_to_hr(np.asarray(lr, np.float64), prep.operator.scale)
    d = mb.displacement_field(shape, amp, 0)  # zeros at 0 px
    rms = lambda f: float(np.sqrt((f ** 2).sum(0).mean()))  # noqa: E731
    return {"field_rms": rms(e), "field_true_rms": rms(d), "field_residual": rms(e + d),
            "field_applied": bool(training.get("register_applied", True)),
            "field_gain": training.get("register_gain"), "field_estimate_rms": training.get("register_estimate_rms_px")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scene", action="append", required=True)
    ap.add_argument("--amplitudes", default="0,2")
    ap.add_argument("--variant", action="append", required=True)
    ap.add_argument("--iterations", default="", help="PRE+ADV, e.g. 1000+100 (default: the ctx preset)")
    ap.add_argument("--work", default="/tmp/bench_trust_robust")
    ap.add_argument("--seeds", default="0", help="method seeds, e.g. 0,1,2")
    ap.add_argument("--json", default="")
    ap.add_argument("--gates", default="", help="gate_full values to score on each variant's output "
                                                "after the fact (gate = lr), e.g. 0.05,0.1,0.2")
    args = ap.parse_args()
    from maxrf_bench_plugins.proposed import PRESETS, run_proposed
    from maxrf_bench_plugins.proposed.gate import apply_gate

    base = dict(PRESETS["ctx"])
    if args.iterations:
        pre, adv = args.iterations.split("+")
        base.update(pretrain_iterations=int(pre), adversarial_iterations=int(adv))
    out = []
    for spec in args.scene:
        prep0, hidden = scene_prep(spec)
        for amp in [float(a) for a in args.amplitudes.split(",")]:
            prep = misregistered(prep0, amp, 0)
            for (vname, vparams), seed in [(v, sd) for v in map(parse_variant, args.variant)
                                           for sd in map(int, args.seeds.split(","))]:
                params = {**base, **vparams}
                work = Path(args.work) / spec.replace(":", "-") / f"mis{amp:g}" / vname
                work = work if seed == 0 else work.with_name(f"{vname}-s{seed}")
                work.mkdir(parents=True, exist_ok=True)
                inputs = mb.MethodInputs(maps_lr=prep.maps_lr, rgb=prep.rgb, operator=prep.operator,
                                         seed=seed, workdir=work)
                t = time.perf_counter()
                sr = np.asarray(run_proposed(inputs, **params).values)
                np.save(work / "sr.npy", sr)  # the maps, to compare runs bit for bit
                row = {"scene": spec, "amplitude": amp, "variant": vname, "params": vparams, "seed": seed,
                       "schedule": f"{params['pretrain_iterations']}+{params['adversarial_iterations']}",
                       "seconds": round(time.perf_counter() - t, 1), **scores(sr, prep, hidden),
                       **field_error(work, prep0, amp)}
                rows = [row]
                for full in [float(f) for f in args.gates.split(",") if f]:
                    gated, g = apply_gate(sr, prep.maps_lr.values, prep.rgb.values, prep.operator, full)
                    rows.append({**row, "variant": f"{vname}+gate{full:g}", "params": {**vparams, "gate": "lr",
                                 "gate_full": full}, "gate": dict(zip(prep.elements, map(float, g))),
                                 **scores(gated, prep, hidden)})
                for r in rows:
                    out.append(r)
                    reg = (f"  field {'applied' if r['field_applied'] else 'NOT applied'} (held-out gain "
                           f"{r['field_gain'] if r['field_gain'] is not None else float('nan'):.4f}, estimate RMS "
                           f"{r['field_estimate_rms'] or 0:.2f}) RMS {r['field_rms']:.2f} residual "
                           f"{r['field_residual']:.2f} px" if "field_rms" in r else "")
                    print(f"{spec} mis{amp:g} s{seed} {r['variant']:16s} PSNR {r['psnr']:.3f}  hidden {r['psnr_hidden']:.3f} "
                          f"leak {r['leak_hidden']:.4f}  visible {r['psnr_visible']:.3f} "
                          f"leak {r['leak_visible']:.4f}{reg}  ({r['seconds']} s)", flush=True)
                if args.json:
                    mb.atomic_write_text(args.json, json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
