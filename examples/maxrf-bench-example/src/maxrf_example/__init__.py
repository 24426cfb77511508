"""An example maxrf-bench plugin (see ``plugin.py`` for the hooks)."""

__version__ = "0.1.0"
