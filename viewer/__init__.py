"""napari plugin of maxrf-bench (``pip install 'maxrf-bench[napari]'``): open MA-XRF scans
(``.zarr``) and run directories of ``maxrf-bench run`` as layers, and the simulated default
painting as sample data.  The manifest is ``napari.yaml`` (npe2); nothing here imports
napari: the reader returns layer-data tuples, which napari turns into layers.
"""
from ._reader import napari_get_reader, read
from ._sample import sample_painting

__all__ = ["napari_get_reader", "read", "sample_painting"]
