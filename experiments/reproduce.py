"""Runs every study at its demo scale into DIR/<study>/ and writes DIR/report.md.

    python -m experiments.reproduce --workdir=runs/demo [--config.studies=long_memory]

A study is a module ``experiments.<name>`` with ``demo(workdir)`` (train its demo runs into
workdir, resuming if they are there) and ``report(workdir) -> str`` (its markdown section, figure
paths relative to DIR). A new study adds its name to STUDIES.
"""

from __future__ import annotations

import importlib
import time
from pathlib import Path

import jax
from absl import logging

from experiments import _cli
from rnnlab.train import writers

STUDIES = ["long_memory", "gradient_flow", "translate", "forget_bias", "char_lm", "caption"]


def run(config, workdir: str) -> dict:
    names = [s.strip() for s in config.studies.split(",") if s.strip()] or STUDIES
    for name in names:
        _cli.check(
            name in STUDIES,
            "studies",
            config.studies,
            f"unknown study {name!r}{_cli.suggest(name, STUDIES)}; known: {STUDIES}",
        )
    workdir = Path(workdir)
    timings = {}
    for name in names:
        module = importlib.import_module(f"experiments.{name}")
        start = time.perf_counter()
        if not config.report_only:
            logging.info("reproduce: %s", name)
            module.demo(str(workdir / name))
        timings[name] = round(time.perf_counter() - start, 1)
    if jax.process_index() == 0:
        sections = [
            importlib.import_module(f"experiments.{n}").report(str(workdir / n)) for n in names
        ]
        header = (
            "# rnnlab demo report\n\n"
            + "".join(f"- {n}: {t:.0f} s\n" for n, t in timings.items())
            + "\n"
        )
        writers.write_text_atomic(workdir / "report.md", header + "\n".join(sections))
        writers.write_json(workdir / "results.json", {"studies": names, "seconds": timings})
    return {"seconds": timings}


if __name__ == "__main__":
    # Two CPU devices for the sweeps of gradient_flow and forget_bias: every data-parallel
    # study's batch is even, so it splits over them too (more might not divide them).
    _cli.main({"train": run}, name="reproduce", cpu_devices=min(2, _cli.cores()))
