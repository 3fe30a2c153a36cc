"""Synthetic long-memory tasks, generated on device from a PRNG key.

    task = rnnlab.data.tasks.get("adding")
    batch = task.sample(jax.random.fold_in(data_key, step), batch_size, seq_len)

A batch depends only on its key, so ``fold_in(data_key, step)`` makes the data stream a pure
function of (seed, step) and a resumed run sees exactly the batches an uninterrupted one would.

adding (Hochreiter & Schmidhuber 1997, in the form of Le, Jaitly & Hinton 2015):
    inputs [B, T, 2]: channel 0 ~ U[0, 1]; channel 1 is 0 except two 1s, the first at a uniform
    position in [0, T/2), the second in [T/2, T). Target: the sum of the two marked numbers.
    MSE at the last step. Predicting 1 gives Var(u1 + u2) = 1/6 ~ 0.167.
    Solved: eval MSE < ``threshold`` (0.01 by default).
copy (Arjovsky, Shah & Bengio 2016):
    inputs [B, T + 20, 10] one-hot: 10 symbols from {1..8}, T - 1 blanks (0), the delimiter 9,
    10 blanks. Targets [B, T + 20] in {0..8}: blanks until the last 10 steps, then the 10 symbols.
    ``seq_len`` is the delay T. Cross-entropy at every step; predicting blanks then uniform over
    the 8 symbols gives 10 log 8 / (T + 20). Solved (our choice): the per-symbol error on the
    10 recalled symbols < ``threshold`` (1% by default), i.e. essentially exact recall.
temporal_order (Hochreiter & Schmidhuber 1997, experiment 6a; Pascanu, Mikolov & Bengio 2013):
    inputs [B, T, 8] one-hot over {a, b, c, d, X, Y, B, E}: B first, E last, distractors from
    {a, b, c, d}, and X or Y at t1 in [T/10, 2T/10] and t2 in [5T/10, 6T/10] (Pascanu's
    scaling of the original [10, 20] and [50, 60] for T ~ 100). Four classes: XX, XY, YX, YY.
    Cross-entropy at the last step; chance is log 4 (error 75%). Solved: error < 1%.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax


class Task(NamedTuple):
    """A generated task as pure functions; see the module docstring for each task.

    Attributes:
        name: the registered name.
        input_size, output_size: D of the inputs and the size of the readout.
        readout: "last" (one prediction per sequence) or "all" (one per step).
        sample: (key, batch_size, seq_len) -> dict(inputs [B, T', D] float32, targets, ...).
        loss: (outputs, batch) -> scalar; outputs are [B, O] ("last") or [B, T', O] ("all").
        metrics: (outputs, batch) -> dict of scalars, always with "loss", "error" where a
            classification error is meaningful.
        baseline: seq_len -> the loss of the trivial memoryless predictor.
        solved: host-side metrics dict (floats) -> bool.
        solved_rule: the criterion in words, for reports.
        check_seq_len: seq_len -> None, raises ValueError for a length the task cannot make.
    """

    name: str
    input_size: int
    output_size: int
    readout: str
    sample: Callable[[jax.Array, int, int], dict]
    loss: Callable[[jax.Array, dict], jax.Array]
    metrics: Callable[[jax.Array, dict], dict]
    baseline: Callable[[int], float]
    solved: Callable[[dict], bool]
    solved_rule: str
    check_seq_len: Callable[[int], None]


def _positive(name: str, minimum: int = 1) -> Callable[[int], None]:
    def check(seq_len: int) -> None:
        if not isinstance(seq_len, int) or isinstance(seq_len, bool) or seq_len < minimum:
            raise ValueError(
                f"seq_len for task {name!r} must be an int >= {minimum}, got {seq_len!r}"
            )

    return check


# --- adding ----------------------------------------------------------------------------------


def adding(*, threshold: float = 0.01) -> Task:
    """The adding problem; ``threshold`` is the solved MSE."""

    def sample(key, batch_size, seq_len):
        k_u, k_1, k_2 = jax.random.split(key, 3)
        half = seq_len // 2
        values = jax.random.uniform(k_u, (batch_size, seq_len))  # [B, T]
        first = jax.random.randint(k_1, (batch_size,), 0, half)
        second = jax.random.randint(k_2, (batch_size,), half, seq_len)
        t = jnp.arange(seq_len)[None, :]
        markers = ((t == first[:, None]) | (t == second[:, None])).astype(jnp.float32)  # [B, T]
        inputs = jnp.stack([values, markers], axis=-1)  # [B, T, 2]
        targets = jnp.sum(values * markers, axis=1)  # [B]
        return {"inputs": inputs, "targets": targets}

    def loss(outputs, batch):
        return jnp.mean((outputs[:, 0] - batch["targets"]) ** 2)

    def metrics(outputs, batch):
        return {"loss": loss(outputs, batch)}

    return Task(
        name="adding",
        input_size=2,
        output_size=1,
        readout="last",
        sample=sample,
        loss=loss,
        metrics=metrics,
        baseline=lambda seq_len: 1.0 / 6.0,
        solved=lambda m: m["loss"] < threshold,
        solved_rule=f"eval MSE < {threshold:g}",
        check_seq_len=_positive("adding", 2),
    )


# --- copy memory -----------------------------------------------------------------------------

COPY_SYMBOLS = 10  # how many symbols to remember
COPY_ALPHABET = 8  # symbols 1..8; 0 is the blank, 9 the delimiter


def copy(*, threshold: float = 0.01) -> Task:
    """Copy memory; ``threshold`` is the solved per-symbol recall error."""
    n = COPY_SYMBOLS

    def sample(key, batch_size, seq_len):
        symbols = jax.random.randint(key, (batch_size, n), 1, COPY_ALPHABET + 1)  # [B, 10]
        blanks = jnp.zeros((batch_size, seq_len - 1), jnp.int32)
        delimiter = jnp.full((batch_size, 1), COPY_ALPHABET + 1, jnp.int32)
        tail = jnp.zeros((batch_size, n), jnp.int32)
        tokens = jnp.concatenate([symbols, blanks, delimiter, tail], axis=1)  # [B, T + 20]
        targets = jnp.concatenate(
            [jnp.zeros((batch_size, seq_len + n), jnp.int32), symbols], axis=1
        )  # [B, T + 20]
        inputs = jax.nn.one_hot(tokens, COPY_ALPHABET + 2, dtype=jnp.float32)  # [B, T + 20, 10]
        return {"inputs": inputs, "targets": targets}

    def loss(outputs, batch):
        return optax.softmax_cross_entropy_with_integer_labels(outputs, batch["targets"]).mean()

    def metrics(outputs, batch):
        wrong = jnp.argmax(outputs[:, -n:], axis=-1) != batch["targets"][:, -n:]  # [B, 10]
        return {"loss": loss(outputs, batch), "error": wrong.mean()}

    return Task(
        name="copy",
        input_size=COPY_ALPHABET + 2,
        output_size=COPY_ALPHABET + 1,
        readout="all",
        sample=sample,
        loss=loss,
        metrics=metrics,
        baseline=lambda seq_len: n * math.log(COPY_ALPHABET) / (seq_len + 2 * n),
        solved=lambda m: m["error"] < threshold,
        solved_rule=f"recall error < {threshold:.0%} of the {n} copied symbols",
        check_seq_len=_positive("copy", 1),
    )


# --- temporal order --------------------------------------------------------------------------

ORDER_SYMBOLS = 8  # a b c d X Y B E
_X, _B, _E = 4, 6, 7


def order_positions(seq_len: int) -> tuple[tuple[int, int], tuple[int, int]]:
    """The inclusive ranges of t1 and t2: [T/10, 2T/10] and [5T/10, 6T/10], floored."""
    return (seq_len // 10, 2 * seq_len // 10), (5 * seq_len // 10, 6 * seq_len // 10)


def temporal_order(*, threshold: float = 0.01) -> Task:
    """Temporal order, 4 classes; ``threshold`` is the solved classification error."""

    def sample(key, batch_size, seq_len):
        k_d, k_1, k_2, k_s = jax.random.split(key, 4)
        (lo1, hi1), (lo2, hi2) = order_positions(seq_len)
        tokens = jax.random.randint(k_d, (batch_size, seq_len), 0, 4)  # distractors a..d
        t1 = jax.random.randint(k_1, (batch_size,), lo1, hi1 + 1)
        t2 = jax.random.randint(k_2, (batch_size,), lo2, hi2 + 1)
        which = jax.random.randint(k_s, (batch_size, 2), 0, 2)  # 0: X, 1: Y
        t = jnp.arange(seq_len)[None, :]
        tokens = jnp.where(t == t1[:, None], _X + which[:, :1], tokens)
        tokens = jnp.where(t == t2[:, None], _X + which[:, 1:], tokens)
        tokens = tokens.at[:, 0].set(_B).at[:, -1].set(_E)  # [B, T]
        inputs = jax.nn.one_hot(tokens, ORDER_SYMBOLS, dtype=jnp.float32)  # [B, T, 8]
        return {"inputs": inputs, "targets": 2 * which[:, 0] + which[:, 1]}

    def loss(outputs, batch):
        return optax.softmax_cross_entropy_with_integer_labels(outputs, batch["targets"]).mean()

    def metrics(outputs, batch):
        error = (jnp.argmax(outputs, axis=-1) != batch["targets"]).mean()
        return {"loss": loss(outputs, batch), "error": error}

    return Task(
        name="temporal_order",
        input_size=ORDER_SYMBOLS,
        output_size=4,
        readout="last",
        sample=sample,
        loss=loss,
        metrics=metrics,
        baseline=lambda seq_len: math.log(4.0),
        solved=lambda m: m["error"] < threshold,
        solved_rule=f"eval error < {threshold:.0%}",
        check_seq_len=_positive("temporal_order", 10),
    )


# --- registry --------------------------------------------------------------------------------

_REGISTRY: dict[str, Callable[..., Task]] = {
    "adding": adding,
    "copy": copy,
    "temporal_order": temporal_order,
}


def names() -> list[str]:
    """The registered task names."""
    return sorted(_REGISTRY)


def register(name: str, factory: Callable[..., Task]) -> None:
    """Makes ``get(name, **options)`` call ``factory(**options)``."""
    _REGISTRY[name] = factory


def get(name: str, **options) -> Task:
    """The task registered as ``name``, built with its options (e.g. ``threshold``)."""
    if name not in _REGISTRY:
        close = difflib.get_close_matches(str(name), _REGISTRY, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ValueError(f"unknown task {name!r}{hint}; known tasks: {names()}")
    return _REGISTRY[name](**options)


# --- the data source the training loop draws from --------------------------------------------


class Source(NamedTuple):
    """Where a training loop gets its batches; its position lives in the train state.

    Attributes:
        init: () -> data_state, a pytree of arrays (checkpointed with the train state).
        next: data_state -> (batch, data_state). For generated tasks it is jit-traceable and runs
            inside the compiled step; a file-backed loader keeps its read position (epoch, index,
            shuffle key) in data_state the same way, so resume stays exact.
    """

    init: Callable[[], dict]
    next: Callable[[dict], tuple[dict, dict]]


def source(task: Task, key: jax.Array, batch_size: int, seq_len: int) -> Source:
    """Batch i is ``task.sample(fold_in(key, i), batch_size, seq_len)``: exact per (seed, i)."""
    task.check_seq_len(seq_len)

    def init():
        return {"key": key, "index": jnp.zeros((), jnp.int32)}

    def next_batch(data_state):
        batch_key = jax.random.fold_in(data_state["key"], data_state["index"])
        batch = task.sample(batch_key, batch_size, seq_len)
        return batch, {"key": data_state["key"], "index": data_state["index"] + 1}

    return Source(init, next_batch)
