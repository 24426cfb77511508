"""An exported super-resolution model: its metadata and an onnxruntime session.

The model file is written by ``maxrf-bench export``: inputs ``maps_lr`` ``(1, B, h, w)``
and ``rgb`` ``(1, 3, s·h, s·w)``, output ``maps`` ``(1, B, s·h, s·w)``, all in the
normalised units ``(counts - offset) / span`` (per element), and ``metadata_props``
(JSON strings) with at least ``elements``, ``scale``, ``normalisation`` and ``halo_lr``.
With ``margin_lr = m > 0`` (models exported since issue 26) the output is only the core
``(1, B, s·(h−2m), s·(w−2m))`` of the input: :func:`run_model` edge-pads the input by ``m``
so that it still returns the whole image, and the tiles (:func:`maxrf_infer.infer_tiled`
with ``margin``) feed each piece with its halo and get exactly its core.

Provider choice tells the truth: onnxruntime's ``get_available_providers()`` lists what
is compiled in, not what works, and a CUDA session that cannot initialise silently falls
back to the CPU.  So CUDA counts only when a session was created with it and
``session.get_providers()`` still names it first.
"""
from __future__ import annotations

import json
import os
import threading
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

CUDA, CPU = "CUDAExecutionProvider", "CPUExecutionProvider"
PROVIDERS = ("auto", "cuda", "cpu")
REQUIRED_METADATA = ("elements", "scale", "normalisation")


class InferError(Exception):
    """A user error: bad model, bad scan, unavailable provider.  One line, exit code 2."""

    exit_code = 2


@dataclass
class ModelInfo:
    """What the runtime needs to know of an exported model (from ``metadata_props``)."""

    path: Path
    elements: list[str]
    scale: int
    offset: np.ndarray  # (element,) counts
    span: np.ndarray    # (element,) counts per normalised unit
    halo_lr: int = 1
    margin_lr: int = 0  # > 0: the graph outputs its input's core, without this many LR pixels
    operator: dict = field(default_factory=dict)
    projection: bool = True
    metadata: dict[str, Any] = field(default_factory=dict)
    #: ``(2, h_lr, w_lr)`` HR-pixel displacements at which the photograph is sampled before the
    #: graph sees it (a ``register=lr`` generator, :mod:`maxrf_infer.photo`); ``None``: as given
    photo_field: np.ndarray | None = None
    #: recorrupted inference (a ``recorrupt > 0`` generator, :mod:`maxrf_infer.recorrupt`): the
    #: checked ``recorrupt`` record; ``None``: the graph's output is the maps
    recorrupt: dict | None = None

    def normalise(self, lr_counts: np.ndarray) -> np.ndarray:
        """``(element, y, x)`` counts → normalised float32 (the model's input units)."""
        lr = np.asarray(lr_counts, dtype=np.float32)
        return (lr - self.offset[:, None, None]) / self.span[:, None, None]

    def denormalise(self, maps: np.ndarray) -> np.ndarray:
        """``(element, y, x)`` normalised → counts, float32 (as ``maxrf-bench run`` writes)."""
        return maps * self.span[:, None, None] + self.offset[:, None, None]


def read_model_info(path: str | os.PathLike) -> ModelInfo:
    """Read and check the metadata of an exported model without building a session."""
    import onnxruntime as ort

    path = Path(path)
    if not path.is_file():
        raise InferError(f"model {str(path)!r} does not exist (expected an .onnx file from "
                         "`maxrf-bench export`)")
    _quiet_onnxruntime()
    try:
        so = _session_options()
        # Only the metadata is needed: skip graph optimisation to open quickly.
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        sess = ort.InferenceSession(str(path), so, providers=[CPU])
        raw = dict(sess.get_modelmeta().custom_metadata_map)
        names = ([i.name for i in sess.get_inputs()], [o.name for o in sess.get_outputs()])
    except Exception as exc:  # onnxruntime raises its own exception types
        raise InferError(f"cannot read model {str(path)!r}: expected an ONNX file from "
                         f"`maxrf-bench export`, found {type(exc).__name__}: {exc}") from None
    missing = [k for k in REQUIRED_METADATA if k not in raw]
    if missing:
        raise InferError(f"model {str(path)!r} lacks metadata {missing}; expected a model written "
                         f"by `maxrf-bench export`, found keys {sorted(raw)}")
    if names != (["maps_lr", "rgb"], ["maps"]):
        raise InferError(f"model {str(path)!r} has inputs {names[0]} and outputs {names[1]}; "
                         "expected inputs ['maps_lr', 'rgb'] and output ['maps']")
    meta = {k: _parse(v) for k, v in raw.items()}
    elements, scale, offset, span, halo, operator = check_metadata(meta, path)
    return ModelInfo(path=path, elements=elements, scale=scale, offset=offset, span=span,
                     halo_lr=halo, margin_lr=check_margin(meta, path, halo), operator=operator,
                     projection=bool(meta.get("projection", True)), metadata=meta,
                     photo_field=check_photo_field(meta, path),
                     recorrupt=check_recorrupt(meta, path, len(elements)))


def check_recorrupt(meta: dict, path: Path, n_elements: int) -> dict | None:
    """The recorruption record a ``recorrupt > 0`` model carries (``recorrupt``), or ``None``."""
    from .recorrupt import RECORD_KEY, RecorruptError, read_record

    if meta.get(RECORD_KEY) is None:
        return None
    try:
        return read_record(meta[RECORD_KEY], n_elements)
    except RecorruptError as exc:
        raise InferError(f"model {str(path)!r}: metadata {exc}") from None


def check_photo_field(meta: dict, path: Path) -> np.ndarray | None:
    """The registration field a ``register=lr`` model carries (``photo_field``), or ``None``."""
    from .photo import FIELD_KEY, FieldError, read_field

    if meta.get(FIELD_KEY) is None:
        return None
    try:
        return read_field(meta[FIELD_KEY])
    except FieldError as exc:
        raise InferError(f"model {str(path)!r}: metadata {exc}") from None


def _integer(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return None


def check_metadata(meta: dict, path: Path) -> tuple:
    """Check the metadata of an exported model when it is loaded (one line per problem,
    naming the key): ``elements`` a list of unique names, ``scale`` an integer ≥ 1,
    ``normalisation`` ``{"offset": [...], "span": [...]}`` with one finite number per element
    (spans > 0), ``halo_lr`` an integer ≥ 0, ``operator`` a mapping."""
    where = f"model {str(path)!r}: metadata"
    elements = meta.get("elements")
    if (not isinstance(elements, list) or not elements
            or not all(isinstance(e, str) and e for e in elements)):
        raise InferError(f"{where} 'elements' must be a non-empty list of element names, found "
                         f"{elements!r:.80}")
    if len(set(elements)) != len(elements):
        raise InferError(f"{where} 'elements' must be unique, found {elements!r:.80}")
    scale = _integer(meta.get("scale"))
    if scale is None or scale < 1:
        raise InferError(f"{where} 'scale' must be an integer ≥ 1, found {meta.get('scale')!r:.80}")
    norm = meta.get("normalisation")
    if not isinstance(norm, dict) or "offset" not in norm or "span" not in norm:
        raise InferError(f"{where} 'normalisation' must be {{\"offset\": [...], \"span\": [...]}}, "
                         f"found {norm!r:.80}")
    try:
        offset = np.asarray(norm["offset"], dtype=np.float32)
        span = np.asarray(norm["span"], dtype=np.float32)
    except (TypeError, ValueError):
        raise InferError(f"{where} 'normalisation' offset and span must be lists of numbers, found "
                         f"{norm!r:.80}") from None
    if offset.shape != (len(elements),) or span.shape != (len(elements),):
        raise InferError(f"model {str(path)!r}: normalisation has {offset.size} offsets and "
                         f"{span.size} spans, expected one per element ({len(elements)})")
    if not (np.isfinite(offset).all() and np.isfinite(span).all() and (span > 0).all()):
        raise InferError(f"{where} 'normalisation' must have finite offsets and positive finite "
                         f"spans, found offset {offset.tolist()!r:.60}, span {span.tolist()!r:.60}")
    halo = _integer(meta.get("halo_lr", 1))
    if halo is None or halo < 0:
        raise InferError(f"{where} 'halo_lr' must be an integer ≥ 0, found {meta.get('halo_lr')!r:.80}")
    operator = meta.get("operator") or {}
    if not isinstance(operator, dict):
        raise InferError(f"{where} 'operator' must be a mapping such as {{\"name\": \"blockmean\"}}, "
                         f"found {operator!r:.80}")
    return elements, scale, offset, span, halo, dict(operator)


def check_margin(meta: dict, path: Path, halo: int) -> int:
    """``margin_lr``: 0 (absent: the whole input's output) or the halo (the core only)."""
    margin = _integer(meta.get("margin_lr", 0))
    if margin is None or margin not in (0, halo):
        raise InferError(f"model {str(path)!r}: metadata 'margin_lr' must be 0 or halo_lr ({halo}), "
                         f"found {meta.get('margin_lr')!r:.80}")
    return margin


def _parse(value: str) -> Any:
    try:
        return json.loads(value)
    except ValueError:
        return value


def _quiet_onnxruntime() -> None:
    """Silence onnxruntime's process-wide logger (provider-loading failures log there)."""
    import onnxruntime as ort

    ort.set_default_logger_severity(4)


def _session_options(threads: int | None = None):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.log_severity_level = 3
    if threads:
        so.intra_op_num_threads = int(threads)
    # Spinning threads steal cycles from the zarr codecs and from other processes.
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return so


def create_session(path: str | os.PathLike, provider: str = "auto", threads: int | None = None):
    """An onnxruntime session on the provider asked for, and the provider that really runs.

    ``provider``: ``auto`` (CUDA when a CUDA session really initialises, else CPU),
    ``cuda`` (an error when CUDA does not initialise) or ``cpu``.
    Returns ``(session, provider_name)``.
    """
    import onnxruntime as ort

    if provider not in PROVIDERS:
        raise InferError(f"--provider expects one of {', '.join(PROVIDERS)}, found {provider!r}")
    _quiet_onnxruntime()
    path = path if isinstance(path, bytes) else str(path)  # bytes: a model in memory (int8)
    so = _session_options(threads)
    why_not = ""
    if provider in ("auto", "cuda"):
        if CUDA not in ort.get_available_providers():
            why_not = (f"this onnxruntime {ort.__version__} build has no CUDA provider "
                       f"(providers: {', '.join(ort.get_available_providers())})")
        else:
            try:
                sess = ort.InferenceSession(path, so, providers=[CUDA, CPU])
                if sess.get_providers() and sess.get_providers()[0] == CUDA:
                    return sess, CUDA
                why_not = ("the CUDA provider did not initialise (no GPU, or CUDA/cuDNN "
                           f"libraries missing); onnxruntime {ort.__version__} fell back to CPU")
            except Exception as exc:  # noqa: BLE001 - any failure means: no CUDA here
                why_not = f"creating a CUDA session failed: {type(exc).__name__}: {exc}"
        if provider == "cuda":
            raise InferError(f"--provider cuda: CUDA is not available: {why_not}; "
                             "use --provider cpu or auto")
    sess = ort.InferenceSession(path, so, providers=[CPU])
    create_session.last_reason = why_not  # type: ignore[attr-defined]
    return sess, CPU


create_session.last_reason = ""  # type: ignore[attr-defined]

# One session per process and (model, provider): sessions do not pickle, so dask
# workers build their own on first use and keep it for the following tiles.
_SESSIONS: dict[tuple, tuple] = {}
_SESSIONS_LOCK = threading.Lock()


def cached_session(path: str | os.PathLike, provider: str = "auto", threads: int | None = None):
    """:func:`create_session`, cached per process (keyed by the model file and its mtime)."""
    p = Path(path).resolve()
    key = (str(p), p.stat().st_mtime_ns, provider, threads, os.getpid())
    with _SESSIONS_LOCK:
        if key not in _SESSIONS:
            _SESSIONS[key] = create_session(p, provider, threads)
        return _SESSIONS[key]


#: ``margin_lr`` per live session (weak keys: a worker's session is freed when it is dropped)
_MARGINS: "weakref.WeakKeyDictionary[Any, int]" = weakref.WeakKeyDictionary()


def model_margin(session) -> int:
    """The model's ``margin_lr`` (0 for models exported before it existed), cached per session."""
    margin = _MARGINS.get(session)
    if margin is None:
        raw = session.get_modelmeta().custom_metadata_map.get("margin_lr", "0")
        margin = _MARGINS[session] = int(_parse(raw) or 0)
    return margin


def pad_margin(maps_lr: np.ndarray, rgb: np.ndarray, margin: int) -> tuple[np.ndarray, np.ndarray]:
    """Whole-image inputs ``(B, h, w)``, ``(3, s·h, s·w)`` edge-padded by ``margin`` LR pixels,
    so that a graph with ``margin_lr = margin`` returns the whole image's output."""
    if not margin:
        return maps_lr, rgb
    m, s = int(margin), rgb.shape[-1] // maps_lr.shape[-1]
    return (np.pad(maps_lr, ((0, 0), (m, m), (m, m)), mode="edge"),
            np.pad(rgb, ((0, 0), (m * s, m * s), (m * s, m * s)), mode="edge"))


def run_graph(session, maps_lr: np.ndarray, rgb: np.ndarray) -> np.ndarray:
    """The graph as it is: ``(B, h, w)`` and ``(3, s·h, s·w)`` → ``(B, s·(h−2m), s·(w−2m))``
    (``m`` = :func:`model_margin`, 0 for a model whose output is the whole input)."""
    feed = {"maps_lr": np.ascontiguousarray(maps_lr[None], dtype=np.float32),
            "rgb": np.ascontiguousarray(rgb[None], dtype=np.float32)}
    return session.run(["maps"], feed)[0][0]


def run_model(session, maps_lr: np.ndarray, rgb: np.ndarray, info: ModelInfo | None = None) -> np.ndarray:
    """One forward pass on a whole image: ``(B, h, w)`` normalised LR and ``(3, s·h, s·w)``
    RGB → ``(B, s·h, s·w)``, whatever the model's ``margin_lr`` (its input edge-padded).
    ``info`` of a model with recorrupted inference (``info.recorrupt``): the maps, i.e. the
    mean of the graph over the recorrupted inputs, projected when the model projects
    (:mod:`maxrf_infer.recorrupt`); without ``info`` the graph's output for ``maps_lr``."""
    rec = None if info is None else info.recorrupt
    if rec is None:
        return run_graph(session, *pad_margin(maps_lr, rgb, model_margin(session)))
    from .recorrupt import recorrupted_average
    from .weighted import blockmean_project

    out = recorrupted_average(lambda lr: run_model(session, lr, rgb), maps_lr, rec, info.offset, info.span)
    return blockmean_project(out, maps_lr, info.scale) if rec["projection"] else out
