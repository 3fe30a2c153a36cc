"""Metric writers: ``DIR/metrics.jsonl`` and TensorBoard events (tensorboardX, no TensorFlow).

The interface is clu's ``write_scalars(step, dict)`` (``clu.metric_writers`` itself imports
TensorFlow). metrics.jsonl holds one JSON object per logged step (and model, for sweeps). Only
process 0 writes; other processes get a writer that does nothing.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np


def _scalar(value) -> float | int:
    value = np.asarray(value).item()
    return value if isinstance(value, int) else float(value)


class MetricWriter:
    """Writes scalars to metrics.jsonl and TensorBoard event files in ``workdir``."""

    def __init__(self, workdir, *, enabled: bool = True, tensorboard: bool = True):
        self.path = Path(workdir) / "metrics.jsonl"
        self.enabled = enabled
        self._tb = None
        if enabled and tensorboard:
            self._tb = _summary_writer()(logdir=str(workdir), flush_secs=30)

    def write_scalars(self, step: int, scalars: dict, **labels) -> None:
        """One metrics.jsonl line {"step", **labels, **scalars}; TB tags get label prefixes."""
        if not self.enabled:
            return
        values = {k: _scalar(v) for k, v in scalars.items()}
        with self.path.open("a") as f:
            f.write(json.dumps({"step": int(step), **labels, **values}) + "\n")
        if self._tb is not None:
            prefix = "".join(f"{k}_{v}/" for k, v in labels.items())
            for k, v in values.items():
                if math.isfinite(v):
                    self._tb.add_scalar(prefix + k, v, int(step))

    def truncate_after(self, step: int) -> None:
        """Drops lines logged after ``step`` (and a torn last line): a resumed run rewrites them."""
        if not self.enabled or not self.path.exists():
            return
        kept = []
        for line in self.path.read_text().splitlines(keepends=True):
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                break
            if not line.endswith("\n") or record.get("step", 0) > step:
                break
            kept.append(line)
        write_text_atomic(self.path, "".join(kept))

    def flush(self) -> None:
        if self._tb is not None:
            self._tb.flush()

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()
            self._tb = None


def _summary_writer():
    """tensorboardX's SummaryWriter, imported without torch when torch is not loaded yet.

    tensorboardX imports torch if it can (4 s on 2 cores) only to accept torch tensors, which
    rnnlab never passes; hiding it for the import leaves torch importable afterwards.
    """
    import sys

    if "tensorboardX" in sys.modules or "torch" in sys.modules:
        from tensorboardX import SummaryWriter

        return SummaryWriter
    sys.modules["torch"] = None  # makes `import torch` raise ImportError
    try:
        from tensorboardX import SummaryWriter
    finally:
        del sys.modules["torch"]
    return SummaryWriter


def read_metrics(workdir, **labels) -> list[dict]:
    """The records of ``workdir/metrics.jsonl`` whose labels match (e.g. model=3)."""
    path = Path(workdir) / "metrics.jsonl"
    if not path.exists():
        return []
    records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [r for r in records if all(r.get(k) == v for k, v in labels.items())]


def write_text_atomic(path, text: str) -> None:
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def write_json(path, obj) -> None:
    """Writes ``obj`` as indented JSON, atomically (a kill never leaves half a file)."""
    write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")
