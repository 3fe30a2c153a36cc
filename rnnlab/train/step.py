"""The train step: gradients, optional clipping, an optax update, non-finite guard.

    step(state) -> (state, metrics)      # pure; jit it (the loop does)

The batch comes from the data source inside the step, so generated data never leaves the
device. Clipping (Pascanu, Mikolov & Bengio 2013):

    by global norm:  g <- g * min(1, clip_norm / ||g||_2)     over all leaves together
    by value:        g <- clip(g, -clip_value, clip_value)    elementwise

Both are optional (0 disables) and logged: grad_norm is the norm before clipping, clipped_norm
is 1 when the norm clip fired, clipped_value the fraction of elements the value clip moved.

A non-finite loss or gradient never reaches the params: the update is skipped and ``health``
records the step and the first non-finite quantity. The loop reads it at log and checkpoint
boundaries and, for on_nonfinite="stop", stops there; "skip" only counts.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable

import jax
import jax.numpy as jnp
import optax

from rnnlab.train.state import TrainState

# --- optimisers and schedules by name --------------------------------------------------------

OPTIMIZERS: dict[str, Callable[..., optax.GradientTransformation]] = {
    "sgd": optax.sgd,
    "momentum": lambda learning_rate, momentum=0.9, **kw: optax.sgd(learning_rate, momentum, **kw),
    "nesterov": lambda learning_rate, momentum=0.9: optax.sgd(learning_rate, momentum, True),
    "adam": optax.adam,
    "adamw": optax.adamw,
    "rmsprop": optax.rmsprop,
    "adagrad": optax.adagrad,
}
SCHEDULES = ("constant", "cosine", "warmup_cosine", "linear")


def _unknown(kind: str, name: str, known) -> ValueError:
    close = difflib.get_close_matches(str(name), list(known), n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return ValueError(f"unknown {kind} {name!r}{hint}; known: {sorted(known)}")


def schedule(name: str, learning_rate: float, steps: int, warmup_steps: int = 0) -> optax.Schedule:
    """A learning-rate schedule by name: constant, cosine, warmup_cosine or linear (to 0)."""
    if name not in SCHEDULES:
        raise _unknown("schedule", name, SCHEDULES)
    if name == "constant":
        return optax.constant_schedule(learning_rate)
    if name == "cosine":
        return optax.cosine_decay_schedule(learning_rate, max(steps, 1))
    if name == "linear":
        return optax.linear_schedule(learning_rate, 0.0, max(steps, 1))
    return optax.warmup_cosine_decay_schedule(0.0, learning_rate, warmup_steps, max(steps, 1))


def optimizer(name: str, learning_rate, **options) -> optax.GradientTransformation:
    """An optax optimiser by name (see ``OPTIMIZERS``); ``learning_rate`` may be a schedule."""
    if name not in OPTIMIZERS:
        raise _unknown("optimizer", name, OPTIMIZERS)
    return OPTIMIZERS[name](learning_rate, **options)


# --- clipping --------------------------------------------------------------------------------


def clip_gradients(grads, clip_norm: float = 0.0, clip_value: float = 0.0):
    """Clips by value, then by global norm; returns (grads, metrics). 0 disables a clip."""
    grad_norm = optax.tree.norm(grads)
    metrics = {"grad_norm": grad_norm}
    if clip_value > 0:
        leaves = jax.tree.leaves(grads)
        moved = sum(jnp.sum(jnp.abs(g) > clip_value) for g in leaves)
        metrics["clipped_value"] = moved / sum(g.size for g in leaves)
        grads = jax.tree.map(lambda g: jnp.clip(g, -clip_value, clip_value), grads)
    if clip_norm > 0:
        norm = optax.tree.norm(grads)
        scale = jnp.minimum(1.0, clip_norm / jnp.maximum(norm, 1e-12))
        metrics["clipped_norm"] = (norm > clip_norm).astype(jnp.float32)
        grads = jax.tree.map(lambda g: g * scale.astype(g.dtype), grads)
    return grads, metrics


# --- the step --------------------------------------------------------------------------------


def _first_nonfinite(loss, grads) -> jax.Array:
    """-1 if all finite; 0 if the loss is not; 1 + i for the first non-finite gradient leaf i."""
    flags = jnp.stack(
        [jnp.isfinite(loss)] + [jnp.all(jnp.isfinite(g)) for g in jax.tree.leaves(grads)]
    )
    return jnp.where(jnp.all(flags), -1, jnp.argmin(flags)).astype(jnp.int32)


def make_step(
    loss_fn: Callable,
    tx: optax.GradientTransformation,
    next_batch: Callable,
    *,
    grad_fn: Callable | None = None,
    clip_norm: float = 0.0,
    clip_value: float = 0.0,
    learning_rate: optax.Schedule | None = None,
) -> Callable[[TrainState], tuple[TrainState, dict]]:
    """Builds the pure train step.

    Args:
        loss_fn: (params, batch, key) -> (loss, aux dict of scalars), a mean over the batch.
        tx: the optax optimiser (without clipping; that is done here, so it can be logged).
        next_batch: data_state -> (batch, data_state), e.g. ``Source.next``.
        grad_fn: (params, batch, key) -> ((loss, aux), grads); default ``value_and_grad`` of
            loss_fn, ``parallel.data_parallel_grad`` for data parallelism.
        clip_norm, clip_value: see the module docstring; 0 disables.
        learning_rate: the schedule, only to log "learning_rate".

    Returns:
        step(state) -> (state, metrics): metrics hold loss, grad_norm, the clip metrics, aux,
        and "nonfinite" (1.0 if this update was skipped).
    """
    grad_fn = grad_fn or jax.value_and_grad(loss_fn, has_aux=True)

    def step(state: TrainState):
        batch, data_state = next_batch(state.data_state)
        key = jax.random.fold_in(state.key, state.step)
        (loss, aux), grads = grad_fn(state.params, batch, key)
        bad_what = _first_nonfinite(loss, grads)
        ok = bad_what < 0
        grads, clip_metrics = clip_gradients(grads, clip_norm, clip_value)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        keep = lambda new, old: jax.tree.map(lambda n, o: jnp.where(ok, n, o), new, old)  # noqa: E731
        h = state.health
        first = (h["bad_step"] < 0) & ~ok
        health = {
            "skipped": h["skipped"] + (~ok).astype(jnp.int32),
            "bad_step": jnp.where(first, state.step + 1, h["bad_step"]),
            "bad_what": jnp.where(first, bad_what, h["bad_what"]),
        }
        metrics = {"loss": loss, **clip_metrics, **aux, "nonfinite": (~ok).astype(jnp.float32)}
        if learning_rate is not None:
            metrics["learning_rate"] = learning_rate(state.step)
        new_state = TrainState(
            step=state.step + 1,
            params=keep(params, state.params),
            opt_state=keep(opt_state, state.opt_state),
            key=state.key,
            data_state=data_state,
            health=health,
        )
        return new_state, metrics

    return step
