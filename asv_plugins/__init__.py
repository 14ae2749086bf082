"""asv plugins of this repository (asv.conf.json loads them as ".asv_plugins.<name>", leading dot)."""
