"""Where each model's released weights come from, and loading them safely.

Nothing is downloaded: ``--set NAME.weights=PATH`` names a file the user has.  Without it
:func:`require_weights` stops with one line that names the file for the run's scale, where
the authors publish it, and how to pass it.

Files are read with ``torch.load(..., weights_only=True)`` (tensors and plain containers
only; a pickle that names any other global is refused, never executed) or, for
``.safetensors``, with ``safetensors.torch.load_file``.  Read for this module: the release
pages named in :data:`RELEASES`, CAR's ``run.py`` (``usn.pth`` loaded into an
``nn.DataParallel`` wrapper, so keys carry ``module.``), HAT's ``options/test/*.yml``
(``param_key_g: params_ema``), Swin2SR's ``main_test_swin2sr.py`` (``param_key_g =
'params'``, else the bare dict) and spandrel's ``__helpers/loader.py`` /
``canonicalize.py`` (which unwrap those keys and strip ``module.``).
"""
from __future__ import annotations

import pickle
from dataclasses import dataclass
from pathlib import Path

import maxrf_bench as mb


@dataclass(frozen=True)
class Release:
    """The authors' released weights of one method."""

    method: str
    scales: tuple[int, ...]
    file: str             # file name pattern, ``{s}`` = scale
    where: str            # where the authors publish it, ``{s}`` = scale
    architecture: str     # spandrel architecture id, or "EDSR" (ours)

    def file_for(self, scale: int) -> str:
        return self.file.format(s=scale)

    def missing_message(self, scale: int) -> str:
        how = f"pass it with --set {self.method}.weights=PATH"
        if scale in self.scales:
            return (f"{self.method} needs its pretrained weights, which are not downloaded at run "
                    f"time: get {self.file_for(scale)} (the x{scale} model) from "
                    f"{self.where.format(s=scale)} and {how}")
        avail = ", ".join(f"x{s}" for s in self.scales)
        return (f"{self.method} needs pretrained weights for this run's scale x{scale}, but the "
                f"authors released {avail} models only ({self.file} from "
                f"{self.where.format(s='{s}')}); run with --scale {self.scales[-1]} and {how}")


RELEASES: dict[str, Release] = {
    "car": Release(
        "car", (2, 4), "usn.pth of the {s}x folder",
        "the pretrained models linked from the README of github.com/sunwj/CAR "
        "(https://mega.nz/#!XzIm3YhT!jbIOOOGBOiKtv3VAOD782Mz7nK1L_kma-BzR-RhboW4)",
        "EDSR"),
    "hat": Release(
        "hat", (2, 3, 4), "HAT_SRx{s}_ImageNet-pretrain.pth",
        "the authors' Google Drive folder linked from the README of github.com/XPixelGroup/HAT "
        "(https://drive.google.com/drive/folders/1HpmReFfoUqUbnAOQ7rvOeNU3uf_m69w0; any HAT, HAT-S "
        "or HAT-L SRx{s} file there works)",
        "HAT"),
    "swin2sr": Release(
        "swin2sr", (2, 4), "Swin2SR_ClassicalSR_X{s}_64.pth",
        "the releases of github.com/mv-lab/swin2sr "
        "(https://github.com/mv-lab/swin2sr/releases/download/v0.0.1/Swin2SR_ClassicalSR_X{s}_64.pth)",
        "Swin2SR"),
}


def require_weights(method: str, weights, scale: int) -> Path:
    """The weights path, or one :class:`maxrf_bench.ConfigError` line saying what to get."""
    release = RELEASES[method]
    if weights in (None, ""):
        raise mb.ConfigError(release.missing_message(scale))
    path = Path(str(weights)).expanduser()
    if not path.is_file():
        raise mb.ConfigError(f"{method}.weights: no such file {str(path)!r}; "
                             + release.missing_message(scale).split(": ", 1)[-1])
    return path


def _first_line(exc: BaseException) -> str:
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    for ln in lines:  # torch's weights_only refusal puts the reason on a later line
        if "Unsupported global" in ln or "WeightsUnpickler error" in ln:
            return ln
    return lines[0] if lines else type(exc).__name__


def load_checkpoint(method: str, path: Path):
    """The object stored in ``path``: safetensors, or a torch file read with weights_only."""
    import torch

    if path.suffix.lower() == ".safetensors":
        try:
            from safetensors.torch import load_file
        except ModuleNotFoundError:
            raise mb.ConfigError(f"{method}.weights {str(path)!r} is a .safetensors file; "
                                 f"reading it needs the safetensors package (pip install "
                                 f"safetensors)") from None
        try:
            return load_file(str(path), device="cpu")
        except Exception as exc:  # noqa: BLE001 - any unreadable file is the user's input
            raise mb.ConfigError(f"{method}.weights {str(path)!r} is not a readable safetensors "
                                 f"file: {_first_line(exc)}") from None
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise mb.ConfigError(f"{method}.weights {str(path)!r} holds more than tensors, so it is "
                             f"not loaded (torch.load with weights_only=True refused it: "
                             f"{_first_line(exc)})") from None
    except Exception as exc:  # noqa: BLE001 - truncated zip, not a torch file…
        raise mb.ConfigError(f"{method}.weights {str(path)!r} is not a readable torch weights "
                             f"file: {_first_line(exc)}") from None
