"""``python -m maxrf_infer MODEL.onnx SCAN.zarr -o OUT.zarr``: the ``maxrf-infer`` command."""
from .cli import main

main()
