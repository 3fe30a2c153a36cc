"""The training loop: restore or init, compiled steps, logging, checkpoints, preemption.

    state = loop.train(workdir=..., init_state=..., train_step=..., steps=..., ...)

No host sync per step: metrics and the device-side ``health`` counters are fetched every
``log_every`` steps and before every checkpoint. A checkpoint is written every
``checkpoint_every`` steps and at the end; SIGTERM or SIGINT saves at the current step and exits
with status 0. Metrics logged after the restored step are dropped from metrics.jsonl on resume,
so a resumed run's log equals an uninterrupted one's.
"""

from __future__ import annotations

import logging
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path

import jax
import numpy as np

from rnnlab.train import parallel
from rnnlab.train.checkpoint import Checkpointer, flatten_config
from rnnlab.train.state import TrainState, leaf_names, to_host
from rnnlab.train.writers import MetricWriter, write_json

log = logging.getLogger(__name__)
ON_NONFINITE = ("stop", "skip")


class NonFiniteError(FloatingPointError):
    """A loss or gradient became NaN or infinite and on_nonfinite="stop"."""


class _Signals:
    """Turns SIGTERM/SIGINT into a flag the loop polls between steps (host-side, no sync)."""

    def __init__(self):
        self.received = None
        self._previous = {}

    def __enter__(self):
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                self._previous[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread: no handlers
                pass
        return self

    def _handle(self, signum, frame):
        self.received = signal.Signals(signum).name

    def __exit__(self, *exc):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def abstract_state(init_state: Callable[[], TrainState], sharding) -> TrainState:
    """The state's shapes and dtypes, with ``sharding``, without computing it."""
    shapes = jax.eval_shape(init_state)
    return jax.tree.map(lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sharding), shapes)


def describe_nonfinite(health: dict, params, model: int | None = None) -> str:
    what = int(health["bad_what"])
    quantity = "loss" if what == 0 else f"gradient of params{leaf_names(params)[what - 1]}"
    where = "" if model is None else f" in model {model}"
    return f"non-finite {quantity} at step {int(health['bad_step'])}{where}"


def train(
    *,
    workdir,
    init_state: Callable[[], TrainState],
    train_step: Callable[[TrainState], tuple[TrainState, dict]],
    steps: int,
    log_every: int,
    checkpoint_every: int,
    config: dict,
    resumable=("steps",),
    evaluate: Callable[[TrainState], dict] | None = None,
    max_to_keep: int = 3,
    on_nonfinite: str = "stop",
    mesh=None,
    models: int | None = None,
    progress: bool | None = None,
) -> TrainState:
    """Trains to ``steps``, resuming from ``workdir/checkpoints`` when it holds checkpoints.

    Args:
        workdir: the run directory (metrics.jsonl, TensorBoard events, checkpoints/).
        init_state: () -> a fresh TrainState (jit-traceable; not called when resuming).
        train_step: the pure step of ``step.make_step`` (or a sweep step); jitted here.
        steps: total number of updates.
        log_every, checkpoint_every: intervals in steps; the last step is always both.
        config: the run's config (a ConfigDict or nested dict): written to config.json once
            the checkpoints (if any) have been checked against it, kept in checkpoint meta.
        resumable: config fields that may change between a checkpoint and its resumption.
        evaluate: optional state -> dict of scalars, run at log steps, logged as "eval_*".
        max_to_keep: checkpoints kept.
        on_nonfinite: "stop" (raise NonFiniteError, keeping the last good checkpoint) or "skip"
            (skip such updates and count them as "skipped").
        mesh: the device mesh; state is replicated over it (default: all devices).
        models: the size of the leading model axis of a sweep's state, or None.
        progress: a progress bar (default: when stdout is a terminal) instead of log lines.

    Returns:
        The final state.
    """
    if on_nonfinite not in ON_NONFINITE:
        raise ValueError(f"on_nonfinite={on_nonfinite!r}: expected one of {list(ON_NONFINITE)}")
    workdir = Path(workdir)
    mesh = mesh or parallel.make_mesh()
    replicated = parallel.replicated(mesh)
    lead = jax.process_index() == 0
    nested = config.to_dict() if hasattr(config, "to_dict") else dict(config)
    config = flatten_config(nested)
    ckpt = Checkpointer(workdir / "checkpoints", max_to_keep=max_to_keep)
    restored = ckpt.restore(abstract_state(init_state, replicated), config, resumable)
    if lead:  # only now: a run refused for a config mismatch leaves the workdir as it was
        write_json(workdir / "config.json", nested)
    writer = MetricWriter(workdir, enabled=lead)
    if restored is None:
        state, start = jax.jit(init_state, out_shardings=replicated)(), 0
    else:
        state, start = restored.state, restored.step
        log.info("resumed from %s at step %d", ckpt.directory, start)
    writer.truncate_after(start)
    step_fn = jax.jit(train_step, in_shardings=(replicated,), out_shardings=replicated)
    eval_fn = None if evaluate is None else jax.jit(evaluate, out_shardings=replicated)
    bar = (
        _Progress(steps, start) if (progress or progress is None and sys.stdout.isatty()) else None
    )
    saved, step, metrics = start, start, None
    ticks = (time.perf_counter(), start)
    # XLA CPU with several devices in one process can deadlock when many multi-device steps are
    # in flight at once (each device's part waits in a collective for a peer queued behind
    # other work; jax-ml/jax#25861 is the single-device cousin). One step in flight at a time
    # avoids it, at the cost of dispatch overlapping compute.
    one_at_a_time = mesh.devices.size > 1 and all(d.platform == "cpu" for d in mesh.devices.flat)

    def check_health():
        health = to_host(state.health)
        bad = np.atleast_1d(health["bad_step"]) >= 0
        if on_nonfinite == "stop" and bad.any():
            ckpt.wait()
            m = int(np.argmax(bad))
            one = health if models is None else jax.tree.map(lambda h: h[m], health)
            raise NonFiniteError(
                f"{describe_nonfinite(one, to_host(state.params), None if models is None else m)}"
                f"; stopped at step {step}; the last good checkpoint is step {saved or 'none'}"
            )

    with _Signals() as signals:
        while step < steps:
            state, metrics = step_fn(state)
            step += 1
            if one_at_a_time:
                jax.block_until_ready(state.step)  # host sync: see one_at_a_time above
            if signals.received:
                check_health()
                if saved != step:
                    ckpt.save(step, state, config)
                ckpt.close()
                log.warning("%s at step %d: checkpoint saved, exiting", signals.received, step)
                raise SystemExit(0)
            if step % log_every == 0 or step == steps:
                check_health()
                scalars = to_host(metrics)
                scalars["skipped"] = to_host(state.health["skipped"])
                if eval_fn is not None:
                    scalars.update({f"eval_{k}": v for k, v in to_host(eval_fn(state)).items()})
                _write(writer, step, scalars, models)
                ticks = _report(bar, step, steps, scalars, ticks, models)
            if step % checkpoint_every == 0 or step == steps:
                check_health()
                ckpt.save(step, state, config)
                saved = step
    ckpt.close()
    writer.close()
    if bar is not None:
        bar.close()
    return state


def _write(writer: MetricWriter, step: int, scalars: dict, models: int | None) -> None:
    if models is None:
        writer.write_scalars(step, scalars)
        return
    for m in range(models):
        writer.write_scalars(step, {k: np.asarray(v)[m] for k, v in scalars.items()}, model=m)


def _report(bar, step, steps, scalars, ticks, models):
    now = time.perf_counter()
    rate = (step - ticks[1]) / max(now - ticks[0], 1e-9)
    loss = float(np.mean(scalars["loss"]))
    if bar is not None:
        bar.update(step, rate, loss)
    else:
        shown = {k: float(np.mean(v)) for k, v in scalars.items() if k != "learning_rate"}
        text = " ".join(f"{k}={v:.4g}" for k, v in sorted(shown.items()))
        mean = " (mean over models)" if models else ""
        log.info("step %d/%d: %s%s [%.1f steps/s]", step, steps, text, mean, rate)
    return now, step


class _Progress:
    """A one-line progress bar on stdout: steps/s, ETA and the last logged loss."""

    def __init__(self, steps: int, start: int):
        self.steps = steps
        self.update(start, 0.0, float("nan"))

    def update(self, step: int, rate: float, loss: float) -> None:
        width = 30
        done = int(width * step / max(self.steps, 1))
        eta = (self.steps - step) / rate if rate > 0 else float("nan")
        eta_text = time.strftime("%H:%M:%S", time.gmtime(eta)) if np.isfinite(eta) else "--:--:--"
        sys.stdout.write(
            f"\r[{'#' * done}{'.' * (width - done)}] {step}/{self.steps} "
            f"{rate:.1f} steps/s ETA {eta_text} loss {loss:.4g}"
        )
        sys.stdout.flush()

    def close(self) -> None:
        sys.stdout.write("\n")
        sys.stdout.flush()
