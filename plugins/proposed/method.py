"""Running the proposed method: device and thread choice, training or reuse, inference.

Kept apart from the plugin module so that torch is imported only when the method runs.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch

import maxrf_bench as mb

from .model import GENERATOR_CONFIG, Generator, load_generator, pad_replicate, save_generator
from .train import (CHECKPOINT, fingerprint, network_input, prepare_data, recorrupt_sigma,
                    train_generator)


def train_and_super_resolve(inputs: mb.MethodInputs, p: dict):
    """``run_proposed`` after its parameters are checked: pick device and threads, then run."""
    device = resolve_device(inputs.device)
    with mb.torch_threads(int(p["threads"])):  # restores the caller's count, also after the probe
        if int(p["threads"]) <= 0:
            torch.set_num_threads(choose_threads(device))
        return _run(inputs, p, device)


#: the host's ``--device`` → ``torch.device`` (kept under this name for callers of the plugin)
resolve_device = mb.torch_device


@torch.no_grad()
def super_resolve(generator: Generator, maps_lr: np.ndarray, rgb: np.ndarray, operator,
                  project: bool = True, batch: int = 4096) -> np.ndarray:
    """Full-image inference: ``Proj(Ŷ)`` ``(B, H, W)`` float32 from numpy inputs.

    Bilinear-upsample ``maps_lr`` ``(B, h, w)``, stack with ``rgb`` ``(3, H, W)`` (Eq. 7's
    ``X``), run the generator, keep ``Ŷ = X̂[0:B]`` (Eq. 9) and apply the projection of
    Eq. 10 with ``operator``.  ``kernel = 1``: pixel rows ``batch`` at a time (rows of ~4k
    stay in cache).  ``kernel > 1``: ``X`` edge-padded by the halo, then strips of about
    ``8·batch`` pixels (whole rows) read with their halo — exactly the whole-image function.
    """
    maps_lr = np.asarray(maps_lr, np.float32)
    x, _ = network_input(maps_lr, rgb, operator.scale)
    c, h, w = x.shape
    n_el = maps_lr.shape[0]
    if c != generator.n_channels:
        raise mb.ConfigError(f"the generator takes {generator.n_channels} channels "
                             f"({generator.n_elements} elements + {generator.n_bands} bands), "
                             f"found {n_el} elements + {c - n_el} bands")
    device = next(generator.parameters()).device
    was_training = generator.training
    generator.eval()
    if generator.kernel == 1:
        rows = torch.from_numpy(np.ascontiguousarray(x.reshape(c, -1).T))
        out = torch.empty(rows.shape[0], n_el)
        for start in range(0, rows.shape[0], batch):
            chunk = rows[start:start + batch].to(device)
            out[start:start + batch] = generator(chunk)[:, :n_el].cpu()
        y_hat = out.numpy().T.reshape(n_el, h, w)
    else:
        halo = generator.halo
        x_pad = pad_replicate(torch.from_numpy(x)[None], halo)[0]
        strip = max(1, 8 * batch // w)   # ~32k pixels: the K·M analysis maps of a strip ~40 MB
        y_hat = np.empty((n_el, h, w), np.float32)
        for y0 in range(0, h, strip):
            y1 = min(h, y0 + strip)
            piece = x_pad[None, :, y0:y1 + 2 * halo].to(device)
            y_hat[:, y0:y1] = generator.forward_image(piece)[0, :n_el].cpu().numpy()
    generator.train(was_training)
    if project:
        y_hat = operator.project(y_hat, maps_lr)
    return np.asarray(y_hat, dtype=np.float32)


def choose_threads(device: torch.device) -> int:
    """Torch CPU threads for this run: 1 or all cores, whichever runs a training step faster.

    On a busy machine (cores shared with other processes) OpenMP threads that wait on each
    other are descheduled and a multi-threaded step can be 10× slower than a single-threaded
    one; on an idle machine all cores win.  A 0.2 s probe tells which case this is.
    """
    n_all = torch.get_num_threads()
    if device.type != "cpu" or n_all <= 1:
        return n_all
    g = Generator(8)
    x = torch.rand(2048, g.n_channels)
    timings = {}
    for n in (1, n_all):
        torch.set_num_threads(n)
        best = float("inf")
        for _ in range(3):
            t = time.perf_counter()
            g(x).square().mean().backward()
            best = min(best, time.perf_counter() - t)
        timings[n] = best
    return min(timings, key=timings.get)


def _run(inputs: mb.MethodInputs, p: dict, device: torch.device):
    torch.manual_seed(inputs.seed)
    np.random.seed(inputs.seed % 2**32)
    maps_lr = np.asarray(inputs.maps_lr.values, np.float32)
    rgb = np.asarray(inputs.rgb.values, np.float32)
    op = inputs.operator
    if rgb.shape[0] != 3:
        raise mb.ScanValidationError(f"the proposed method needs an RGB photograph (3 bands), "
                                     f"found {rgb.shape[0]} band(s)")
    workdir = Path(inputs.workdir) if inputs.workdir is not None else None
    p, recorrupt_off = recorrupt_for_size(p, maps_lr)
    fp = fingerprint(p, maps_lr, rgb, op, inputs.seed)
    generator, field = None, None  # field: the learned alignment of the photograph (align > 0)
    photo, register_lr = rgb, None  # photo: the 3-band photograph after the registration (ours)
    if workdir is not None and (workdir / GENERATOR_CONFIG).exists():
        try:
            cached, meta = load_generator(workdir)
            if meta.get("fingerprint") == fp:
                generator = cached.to(device)
                field = (meta.get("training") or {}).get("align_field")
                register_lr = (meta.get("training") or {}).get("register_field_lr")
                inputs.progress(1, 1, "reusing the generator trained earlier")
        except (mb.MaxrfError, KeyError, ValueError, RuntimeError):
            generator = None  # an unreadable model is retrained, not trusted
    if generator is None:
        photo, register_summary = registered_photo(maps_lr, rgb, op, p)
        data = prepare_data(maps_lr, network_photo(photo, p), op, device)
        if float(p.get("recorrupt", 0.0)) > 0:  # noise-aware training (ours)
            data.noise_std = recorrupt_std(p, inputs, maps_lr)
        generator, summary = train_generator(data, p, seed=inputs.seed, progress=inputs.progress,
                                             workdir=workdir, fp=fp)
        summary.update(register_summary)
        if recorrupt_off is not None:
            summary["recorrupt_applied"] = False
            summary["recorrupt_off_reason"] = recorrupt_off["reason"]
        field = summary.get("align_field")
        if workdir is not None:
            meta = {"fingerprint": fp, "elements": inputs.elements, "scale": op.scale,
                    "operator": op.to_dict(), "params": p,
                    "activation": p["activation"], "synthesis": p["synthesis"],
                    "kernel": int(p["kernel"]), "context": p["context"],
                    "projection": bool(p["projection"]),
                    "input": ("X = [bilinear(maps_lr) ; rgb], rgb bands R,G,B in [0,1]; per pixel "
                              "(kernel 1) or edge-padded by the generator's halo, kxk analysis"),
                    "output": "X_hat = [Y_hat ; Z_hat]; maps = Proj(Y_hat) (Eq. 10) when projection",
                    "training": summary, "seed": inputs.seed}
            save_generator(generator.cpu(), workdir, meta)
            generator.to(device)
            (workdir / CHECKPOINT).unlink(missing_ok=True)
    elif register_lr is not None:  # the same function maxrf-infer samples the photograph with
        from maxrf_infer.photo import registered_photo as apply_field

        photo = apply_field(rgb, np.asarray(register_lr, np.float64), op.scale)
    net_rgb = network_photo(photo, p)
    if field is not None:  # the photograph as the learned alignment moved it (ours)
        from .train import apply_alignment

        net_rgb = apply_alignment(net_rgb, field)
        photo = net_rgb[:3]
    batch = int(p["infer_batch"]) * (16 if device.type == "cuda" else 1)
    record = recorrupt_off  # what the ONNX export must reproduce (onnx_export.recorrupt_record)
    if float(p.get("recorrupt", 0.0)) > 0:  # noise-aware training (ours)
        sigma, record = recorrupt_noise(p, inputs, maps_lr)
        out = recorrupted_inference(generator, maps_lr, net_rgb, op, float(p["recorrupt"]),
                                    inputs.seed, bool(p["projection"]), batch, sigma)
    else:
        out = super_resolve(generator, maps_lr, net_rgb, op, project=bool(p["projection"]), batch=batch)
    if record is not None and workdir is not None:  # recorrupt asked for: drawn, or off by size
        mb.atomic_write_text(workdir / RECORRUPT_RECORD, json.dumps(record))
    if p.get("gate", "none") == "lr":  # per-element gate on the photograph's detail (ours)
        from .gate import apply_gate

        out, _ = apply_gate(out, maps_lr, photo, op, float(p["gate_full"]), bool(p["projection"]))
    return inputs.as_hr(out)


def recorrupt_for_size(p: dict, maps_lr: np.ndarray) -> tuple[dict, dict | None]:
    """``p`` with ``recorrupt`` off where the LR grid has fewer pixels than
    ``recorrupt_min_lr_pixels`` (ours; the ``ctx-quickscan`` preset), and the record of why
    (``None`` when nothing changed)."""
    n = int(maps_lr.shape[-2]) * int(maps_lr.shape[-1])
    least = int(p.get("recorrupt_min_lr_pixels", 0) or 0)
    if not float(p.get("recorrupt", 0.0)) > 0 or n >= least:
        return p, None
    reason = (f"recorrupt={p['recorrupt']} not applied: the LR grid has {n} pixels, fewer than "
              f"recorrupt_min_lr_pixels={least}")
    return {**p, "recorrupt": 0.0}, {"applied": False, "reason": reason}


def recorrupt_variance(p: dict, inputs: mb.MethodInputs) -> np.ndarray | None:
    """The LR noise variance ``recorrupt`` uses: the host's per-pixel one from the counts
    (``recorrupt_noise = "counts"``, where the host gives one), else ``None`` (blind)."""
    if p.get("recorrupt_noise", "counts") == "counts" and inputs.noise_var is not None:
        return np.asarray(inputs.noise_var, np.float64)
    return None


def recorrupt_std(p: dict, inputs: mb.MethodInputs, maps_lr: np.ndarray) -> np.ndarray:
    """The std ``z`` of ``recorrupt`` is drawn with, per element (and per pixel with the
    counts' variance): :func:`~.train.recorrupt_sigma` of :func:`recorrupt_variance`, zero
    for the elements ``recorrupt_share`` leaves out (:func:`~.train.select_recorruption`)."""
    return recorrupt_noise(p, inputs, maps_lr)[0]


#: the workdir file recording the noise of the run's recorrupted inference (written each run)
RECORRUPT_RECORD = "recorrupt.json"


def recorrupt_noise(p: dict, inputs: mb.MethodInputs, maps_lr: np.ndarray) -> tuple[np.ndarray, dict]:
    """:func:`recorrupt_std` and the record of it that the ONNX export carries: the noise
    generator, α, draws, seed, whether the std came from the counts (``noise = "counts"``: the
    host's model, :func:`maxrf_bench.noise_model`) or blind (``sigma`` per element, float32
    values), which elements are recorrupted, and whether the average is projected."""
    from maxrf_infer.recorrupt import GENERATOR

    from .train import RECORRUPT_DRAWS, recorrupted_elements, select_recorruption

    var = recorrupt_variance(p, inputs)
    sigma = recorrupt_sigma(maps_lr, var)
    share = float(p.get("recorrupt_share", 0.0))
    keep = recorrupted_elements(maps_lr, sigma, share)
    record = {"generator": GENERATOR, "alpha": float(p["recorrupt"]), "draws": RECORRUPT_DRAWS,
              "seed": int(inputs.seed), "noise": "counts" if var is not None else "blind",
              "sigma": None if var is not None else [float(v) for v in sigma.reshape(-1)],
              "elements": [bool(k) for k in keep], "projection": bool(p["projection"])}
    return select_recorruption(maps_lr, sigma, share), record


def recorrupted_inference(generator: Generator, maps_lr: np.ndarray, rgb: np.ndarray, operator,
                          alpha: float, seed: int, project: bool, batch: int,
                          sigma: np.ndarray) -> np.ndarray:
    """The mean of the generator over ``RECORRUPT_DRAWS`` inputs ``Y + α·z``, ``z`` of std
    ``sigma`` (:func:`recorrupt_std`; the training distribution of ``recorrupt``,
    ``train.Recorrupter``), then ``Proj`` onto the LR maps.

    ``z`` is drawn by :func:`maxrf_infer.recorrupt.recorrupted_input`, a counter-based normal
    keyed by (seed, draw, element, LR pixel), so that the exported model's runtime draws the
    same noise for any tile (the training's own draws stay torch's, ``train.lr_recorruption``)."""
    from maxrf_infer.recorrupt import recorrupted_input

    from .train import RECORRUPT_DRAWS

    acc = np.zeros((maps_lr.shape[0],) + tuple(rgb.shape[-2:]), np.float64)
    for k in range(RECORRUPT_DRAWS):
        noisy = recorrupted_input(maps_lr, sigma, alpha, seed, k)
        acc += super_resolve(generator, noisy, rgb, operator, project=False, batch=batch)
    out = (acc / RECORRUPT_DRAWS).astype(np.float32)
    return np.asarray(operator.project(out, maps_lr), np.float32) if project else out


def registered_photo(maps_lr: np.ndarray, rgb: np.ndarray, op, p: dict) -> tuple[np.ndarray, dict]:
    """The photograph moved by the registration estimated on the LR grid (``register = "lr"``,
    ours; ``photo_prep.estimate_registration``) and what the training summary records of it; the
    photograph as given otherwise, and also when the estimated field is not significant
    (its held-out fit gain below ``photo_prep.REGISTER_MIN_GAIN``: an aligned photograph).

    The record: ``register_applied``, ``register_gain`` (held-out), ``register_global``,
    ``register_estimate_rms_px`` (the estimate's RMS, applied or not), ``register_rms_px``
    (what was applied: 0 when not), ``register_passes`` (each estimate pass's held-out gain,
    whether it was applied and its saturation) and ``register_field_lr`` (the applied field at full
    precision, which reuse and the ONNX export apply again; ``None`` when not applied)."""
    if p.get("register", "none") != "lr":
        return rgb, {}
    from maxrf_infer.photo import registered_photo as apply_field

    from .photo_prep import estimate_registration

    est = estimate_registration(maps_lr, rgb, op, float(p["register_radius"]), int(p["register_passes"]))
    f = est["field"]
    rms = float(np.sqrt((f ** 2).sum(0).mean()))
    applied = est["significant"]
    summary = {"register_applied": applied, "register_gain": float(est["gain"]),
               "register_global": est["global"], "register_estimate_rms_px": rms,
               "register_rms_px": rms if applied else 0.0,
               "register_passes": est["passes"],
               "register_field_lr": est["field_lr"].tolist() if applied else None}
    # the photograph as the exported model's runtime samples it (maxrf_infer.photo)
    return (apply_field(rgb, est["field_lr"], op.scale) if applied else rgb), summary


def network_photo(photo: np.ndarray, p: dict) -> np.ndarray:
    """The bands of ``X`` the photograph gives: itself, then its blurred copies when
    ``photo_scales`` is set (ours; ``photo_prep.scale_space``)."""
    from .photo_prep import parse_scales, scale_space

    scales = parse_scales(p.get("photo_scales", ""))
    return scale_space(photo, scales) if scales else photo


