"""Built-in dataset plugins of maxrf-bench: the painting simulator, importers, real scans."""
