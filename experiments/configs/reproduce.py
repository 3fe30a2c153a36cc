"""The main job: short versions of every study, and DIR/report.md with their figures and tables.

    scripts/demo.sh                      # = python -m experiments.reproduce --workdir=runs/demo
    python -m experiments.reproduce --workdir=runs/demo --config.studies=long_memory

Variants: "" runs every study in ``experiments.reproduce.STUDIES`` at its demo scale (about 10
minutes on 2 CPU cores in all; long_memory alone about 3 minutes).
"""

import ml_collections


def get_config(variant: str = "") -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.studies = ""  # comma-separated study names; "" runs all of experiments.reproduce.STUDIES
    c.report_only = False  # rebuild report.md from the existing runs without training
    if variant:
        raise ValueError(f"unknown variant {variant!r}; known: ''")
    return c
