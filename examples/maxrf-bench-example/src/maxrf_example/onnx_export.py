"""ONNX export of ``example-bilinear``: the graph a workstation runs with ``maxrf-infer``.

The contract of ``maxrf-infer`` (see docs/plugins.md, "Exporting to ONNX"): inputs
``maps_lr`` (1, B, h, w) and ``rgb`` (1, 3, s·h, s·w), output ``maps`` (1, B, s·h, s·w), all
float32 in the normalised units the method saw; ``metadata_props`` with at least
``elements``, ``scale`` and ``normalisation`` (JSON strings), and ``halo_lr`` (how many LR
pixels around a tile the output depends on).  Built with ``onnx.helper`` (no PyTorch):
one ``Resize`` (linear, half-pixel centres: the same bilinear as ``mb.upsample``).
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import maxrf_bench as mb


def export_bilinear(workdir: Path | None, path: str | os.PathLike, metadata: dict) -> Path:
    """``Method.export`` of ``example-bilinear``: write the ONNX model to ``path``."""
    import onnx
    from onnx import TensorProto, helper

    def const(name, values):
        return helper.make_node("Constant", [], [name], value=helper.make_tensor(
            name + "_value", TensorProto.INT64, [len(values)], values))

    nodes = [
        helper.make_node("Shape", ["maps_lr"], ["lr_shape"]),
        helper.make_node("Shape", ["rgb"], ["rgb_shape"]),
        const("zero", [0]), const("two", [2]), const("four", [4]),
        helper.make_node("Slice", ["lr_shape", "zero", "two"], ["batch_bands"]),
        helper.make_node("Slice", ["rgb_shape", "two", "four"], ["height_width"]),
        helper.make_node("Concat", ["batch_bands", "height_width"], ["sizes"], axis=0),
        helper.make_node("Resize", ["maps_lr", "", "", "sizes"], ["maps"], mode="linear",
                         coordinate_transformation_mode="half_pixel"),
    ]
    graph = helper.make_graph(
        nodes, "example-bilinear",
        [helper.make_tensor_value_info("maps_lr", TensorProto.FLOAT, [1, "bands", "h_lr", "w_lr"]),
         helper.make_tensor_value_info("rgb", TensorProto.FLOAT, [1, 3, "height", "width"])],
        [helper.make_tensor_value_info("maps", TensorProto.FLOAT, [1, "bands", "height", "width"])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)],
                              producer_name="maxrf-bench-example")
    model.ir_version = 8  # onnxruntime reads IR versions up to 13
    props = {**metadata, "projection": False, "halo_lr": 1, "units": "normalised"}
    helper.set_model_props(model, {k: v if isinstance(v, str) else json.dumps(v, default=str)
                                   for k, v in props.items()})
    onnx.checker.check_model(model, full_check=True)
    with mb.atomic_path(path) as tmp:  # readers never see half a file
        onnx.save_model(model, tmp)
    return Path(path)
