"""``--precision int8``: the exported fp32 model quantised for the CPU, calibrated on the scan.

A labelled, opt-in trade of accuracy for speed (issue 26 item 4); fp32 stays the default.
onnxruntime's static quantisation (:func:`onnxruntime.quantization.quantize_static`, QDQ
format, unsigned 8-bit activations with per-tensor ranges, signed 8-bit weights per output
channel) turns every convolution into ``QLinearConv`` (8-bit integer products: VNNI/AMX
kernels where the CPU has them) and every sigmoid into a 256-entry lookup table
(``QLinearSigmoid``).  The activation ranges are calibrated on a few tiles of the scan
being super-resolved, so nothing but the scan and the model is needed; the difference to
fp32 is measured on other tiles of the same scan and printed.  Measured on the benchmark
generator (tests/benchmarks/bench_infer.py): about 1.7× the fp32 pixels per CPU-second
for a maximal difference of about 7e-3 of the maps' range — far above the 1e-5 to which the
fp32 output equals the run's maps, so it is never the default.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Iterable

import numpy as np

from .model import InferError, run_graph

PRECISIONS = ("fp32", "int8")


def check_precision(precision: str) -> str:
    if precision not in PRECISIONS:
        raise InferError(f"--precision expects one of {', '.join(PRECISIONS)}, found {precision!r}")
    return precision


def require_quantizer() -> None:
    """Fail (one line) before any work when onnxruntime's quantisation tool cannot import."""
    try:
        import onnxruntime.quantization  # noqa: F401
    except ImportError as exc:  # the tool needs the onnx package, not a runtime dependency
        raise InferError(f"--precision int8 needs onnxruntime's quantisation tool, which failed to "
                         f"import ({exc}); install it with: pip install 'maxrf-infer[int8]' "
                         "(adds the onnx package)") from None


def quantize_int8(model_path: str | os.PathLike,
                  calibration: Iterable[tuple[np.ndarray, np.ndarray]]) -> bytes:
    """The model statically quantised to 8 bits (QDQ), its activation ranges calibrated on
    ``calibration``: ``(maps_lr, rgb)`` normalised pairs as the graph takes them."""
    require_quantizer()
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    pairs = [(np.ascontiguousarray(lr[None], np.float32), np.ascontiguousarray(rgb[None], np.float32))
             for lr, rgb in calibration]
    if not pairs:
        raise InferError("--precision int8 needs at least one tile of the scan to calibrate on")

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter(pairs)

        def get_next(self):
            pair = next(self.it, None)
            return None if pair is None else {"maps_lr": pair[0], "rgb": pair[1]}

    import logging

    log = logging.getLogger()
    level = log.level
    log.setLevel(logging.ERROR)  # the tool advises pre-processing on the root logger
    try:
        with tempfile.TemporaryDirectory(prefix="maxrf-int8-") as tmp:
            out = Path(tmp) / "int8.onnx"
            quantize_static(str(model_path), str(out), Reader(), quant_format=QuantFormat.QDQ,
                            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                            per_channel=True, op_types_to_quantize=["Conv", "Sigmoid", "Add"])
            return out.read_bytes()
    except InferError:
        raise
    except Exception as exc:  # the tool raises many types on a graph it cannot quantise
        raise InferError(f"--precision int8: onnxruntime could not quantise {Path(model_path).name}: "
                         f"{type(exc).__name__}: {exc}") from None
    finally:
        log.setLevel(level)


def int8_difference(fp32_session, int8_session, samples: Iterable[tuple[np.ndarray, np.ndarray]]) -> float:
    """The largest difference between the int8 and fp32 outputs on ``samples`` (inputs as the
    graph takes them, with its margin), relative to the largest fp32 value (normalised
    units, per element the same scale the maps have)."""
    worst, top = 0.0, 0.0
    for lr, rgb in samples:
        ref = run_graph(fp32_session, lr, rgb)
        worst = max(worst, float(np.abs(run_graph(int8_session, lr, rgb) - ref).max()))
        top = max(top, float(np.abs(ref).max()))
    return worst / max(top, 1e-12)
