"""absl entrypoints: ``python -m experiments.NAME --workdir=DIR [--config.field=value ...]``."""
