"""Sweeps: N independent models (seeds x hyperparameters) in one compiled program.

    init = sweep.init_models(init_one, hparams)            # hparams: pytree, leading axis N
    step = sweep.step_models(step_one, hparams)            # step_one(state, hparams)
    loop.train(init_state=init, train_step=step, models=N, ...)

Every leaf of the state gets a leading model axis [N, ...]; so do the metrics, which the loop
writes per model (metrics.jsonl records carry "model": i). Strategies:

    "vmap"            jax.vmap: one batched program; right on GPU/TPU
    "map"             lax.map: the models one after another inside the program, memory of one
    "vmap:k"          vmap within groups of k models, lax.map over the groups (a last, smaller
                      group is vmapped on its own)
    "sharded"         the model axis split over every device with jax.shard_map, lax.map inside
                      each shard; on CPU run with JAX_NUM_CPU_DEVICES = number of cores
    "sharded:vmap"    the same with vmap inside each shard; "sharded:vmap:k" with vmap:k
    "auto"            (the default) "vmap" on GPU/TPU; on CPU "sharded" with several devices
                      and at least two models per device, else "map"

Model and data parallelism compose: ``make_mesh(data=d)`` is a (model, data) mesh whose ``model``
axis splits the models and whose ``data`` axis splits each model's batch over d devices. Pass it
as ``mesh=`` with a "sharded" strategy, and build ``step_one`` with
``grad_fn=parallel.local_batch_grad(loss_fn)``, which takes this device's slice of the batch and
averages the gradients over ``data``.

On 2 CPU cores (LSTM 64, T=100, batch 64) vmap is slower than N separate steps, map about equal,
and sharded over 2 devices about 0.55x (scripts/bench_sweeps.py measures it).

"sharded" pads N up to a multiple of the device count with copies of the last model and drops
them from the outputs: with lax.map inside, a step costs ceil(N / devices) models either way.
Unless ``step_models`` is given ``split_one``: the same step with its batch split over the
devices of ``SPLIT`` (built with ``grad_fn=parallel.local_batch_grad(loss_fn, sweep.SPLIT)``).
Then the N mod D models that do not fill a round run data parallel over all D devices, each
device taking B / D of their batch, instead of padding: 5 models on 2 devices cost 2.5 model
steps per device, not 3. When N is not a multiple of the devices the stacked state lives
replicated on every device (an [N, ...] array cannot be split evenly): each device slices its
models inside the program and one all-gather per element width brings the results back.
Every model equals its separate run to float32 tolerance under every strategy
(tests/train/test_sweep.py). check_vma=False: the models never communicate (the split ones only
average their own gradients, in ``local_batch_grad``), and rnnlab's scans start from an
invariant ``jnp.zeros`` carry, which the check rejects (see ``parallel``).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.sharding import AxisType
from jax.sharding import PartitionSpec as P

AXIS = "model"
DATA = "data"  # the name of rnnlab.train.parallel.AXIS
SPLIT = (AXIS, DATA)  # every device of a sweep's mesh: the batch axis of ``split_one``


class _Strategies(tuple):
    """The strategy names; ``in`` also accepts any parseable "vmap:k" or "sharded:..."."""

    def __contains__(self, name) -> bool:
        if name == "auto":
            return True
        try:
            _parse(name)
        except (TypeError, ValueError):
            return False
        return True


STRATEGIES = _Strategies(
    ("auto", "vmap", "map", "vmap:k", "sharded", "sharded:vmap", "sharded:vmap:k")
)


def _parse(strategy: str) -> tuple[bool, int | None]:
    """strategy -> (sharded, group): group None is vmap, 1 is lax.map, k > 1 is vmap:k."""
    if not isinstance(strategy, str):
        raise TypeError(f"strategy={strategy!r}: expected a string")
    rest, sharded = strategy, False
    if rest == "sharded" or rest.startswith("sharded:"):
        sharded, rest = True, rest.removeprefix("sharded").removeprefix(":") or "map"
    if rest == "vmap":
        return sharded, None
    if rest == "map":
        return sharded, 1
    head, _, k = rest.partition(":")
    if head == "vmap" and k.isdigit() and int(k) >= 1:
        return sharded, int(k)
    raise ValueError(
        f"strategy={strategy!r}: expected one of {list(STRATEGIES)} (k a positive integer)"
    )


def resolve(
    strategy: str = "auto", backend: str | None = None, devices=None, num_models: int | None = None
) -> str:
    """The concrete strategy that ``strategy`` names; "auto" depends on the backend.

    Args:
        strategy: a name of ``STRATEGIES`` ("vmap:k" with a number for k).
        backend: "cpu", "gpu", "tpu" (default: ``jax.default_backend()``).
        devices: the devices a "sharded" strategy splits over (default: ``jax.devices()``).
        num_models: N, if known. On the CPU "auto" shards only when every device gets at least
            two models: a multi-device program has a fixed cost. On 2 cores one LSTM 32 or
            GRU 32 split over both devices (``split_one``) took 1.12x and 1.22x the time of the
            model alone; 5 models (2.5 per device) 0.59-0.78x, median 0.62-0.70x
            (scripts/bench_sweeps.py, docs/performance.md).
    """
    if strategy != "auto":
        _parse(strategy)
        return strategy
    backend = backend or jax.default_backend()
    if backend != "cpu":
        return "vmap"
    n = len(jax.devices() if devices is None else devices)
    if n > 1 and (num_models is None or num_models >= 2 * n):
        return "sharded"
    return "map"


def describe(strategy: str = "auto") -> str:
    """What ``strategy`` runs as here, for logs and reports: e.g. "sharded over 2 cpu devices"."""
    name = resolve(strategy)
    if _parse(name)[0]:
        return f"{name} over {jax.device_count()} {jax.default_backend()} devices"
    return f"{name} on {jax.default_backend()}"


def _num(args) -> int:
    return jax.tree.leaves(args)[0].shape[0]


def _concat(*parts):
    return jax.tree.map(lambda *xs: jnp.concatenate(xs), *parts)


def _grouped(fn: Callable, group: int | None) -> Callable:
    """fn over a leading model axis: vmap (None), lax.map (1) or vmap within groups of k."""
    if group is None:
        return jax.vmap(fn)
    if group == 1:

        def run_map(*args):
            if _num(args) == 1:  # one model: its step as is, without a loop around it
                out = fn(*jax.tree.map(lambda x: x[0], args))
                return jax.tree.map(lambda x: x[None], out)
            return lax.map(lambda a: fn(*a), args)

        return run_map

    def run(*args):
        n = _num(args)
        full = n // group * group
        if full == 0:
            return jax.vmap(fn)(*args)
        head = jax.tree.map(lambda x: x[:full].reshape(n // group, group, *x.shape[1:]), args)
        out = lax.map(lambda a: jax.vmap(fn)(*a), head)
        out = jax.tree.map(lambda x: x.reshape(full, *x.shape[2:]), out)  # [full, ...]
        if full == n:
            return out
        return _concat(out, jax.vmap(fn)(*jax.tree.map(lambda x: x[full:], args)))

    return run


_UNSIGNED = {1: jnp.uint8, 2: jnp.uint16, 4: jnp.uint32, 8: jnp.uint64}


def _to_bits(x):
    """x as unsigned integers of its width (typed keys as their key data, bools as uint8)."""
    if jnp.issubdtype(x.dtype, jax.dtypes.prng_key):
        x = jax.random.key_data(x)
    if x.dtype == jnp.bool_:
        return x.astype(jnp.uint8)
    return lax.bitcast_convert_type(x, _UNSIGNED[x.dtype.itemsize])


def _from_bits(bits, like):
    """The inverse of ``_to_bits``: ``bits`` back to the dtype (and key impl) of ``like``."""
    if jnp.issubdtype(like.dtype, jax.dtypes.prng_key):
        data = _from_bits(bits, jax.random.key_data(like))
        return jax.random.wrap_key_data(data, impl=jax.random.key_impl(like))
    if like.dtype == jnp.bool_:
        return bits.astype(jnp.bool_)
    return lax.bitcast_convert_type(bits, like.dtype)


def _gather(tree):
    """Every leaf's model axis all-gathered over ``AXIS``, in one collective per element width.

    Inside a shard_map whose outputs must be replicated (N not a multiple of the devices: an
    [N, ...] array cannot be split evenly). Each XLA:CPU collective is a rendezvous of the
    devices' threads, and a train state has tens of leaves, so the leaves travel bit-cast and
    packed into one buffer per width: N = 5 LSTM 32 went from 0.85 to 0.73 of the separate steps
    (docs/performance.md). Exact: the bits are moved, never added.
    """
    leaves, treedef = jax.tree.flatten(tree)
    bits = [_to_bits(x) for x in leaves]
    out = [None] * len(bits)
    for dtype in dict.fromkeys(x.dtype for x in bits):  # in leaf order: one program per tree
        members = [i for i, x in enumerate(bits) if x.dtype == dtype]
        rows = [bits[i].reshape(bits[i].shape[0], -1) for i in members]
        packed = lax.all_gather(jnp.concatenate(rows, axis=1), AXIS, tiled=True)
        cuts = np.cumsum([r.shape[1] for r in rows])[:-1]
        for i, part in zip(members, jnp.split(packed, cuts, axis=1)):
            out[i] = _from_bits(part.reshape(len(packed), *bits[i].shape[1:]), leaves[i])
    return jax.tree.unflatten(treedef, out)


def make_mesh(data: int = 1, devices=None) -> jax.sharding.Mesh:
    """A (model, data) mesh: ``len(devices) // data`` groups of ``data`` devices.

    Models are split over the ``model`` axis; each model's batch over the ``data`` devices of
    its group (with ``parallel.local_batch_grad``). ``data=1`` is pure model parallelism.

    Args:
        data: devices per model group; must divide the number of devices.
        devices: default ``jax.devices()`` (every device of every process).
    """
    devs = jax.devices() if devices is None else list(devices)
    if not isinstance(data, int) or data < 1 or len(devs) % data:
        raise ValueError(f"data={data!r}: expected a positive divisor of the {len(devs)} devices")
    return jax.make_mesh(
        (len(devs) // data, data), (AXIS, DATA), axis_types=(AxisType.Auto,) * 2, devices=devs
    )


def _mesh(devices) -> jax.sharding.Mesh:
    """The default mesh of a "sharded" strategy: (model, data) = (every device, 1)."""
    devs = jax.devices() if devices is None else list(devices)
    return jax.make_mesh((len(devs), 1), SPLIT, axis_types=(AxisType.Auto,) * 2, devices=devs)


def _sharded(fn: Callable, devices, mesh, split: Callable | None = None) -> Callable:
    """fn over a model axis split by shard_map over ``mesh`` (default: ``_mesh(devices)``).

    Without ``split``, N is padded to a multiple of the ``model`` axis size with copies of the
    last model, whose outputs are dropped. With it, the last N mod D models go to ``split``
    (same signature as fn) on every device, replicated, while the first models are split over
    ``model``. Either way an [N, ...] array cannot be split evenly, so the state comes in and goes
    out replicated: each device takes its models' rows inside the program (sliced by XLA outside
    it, the replicated leaves were resharded by a collective-permute each, 5-6 ms a step at
    N = 5, LSTM 64), and ``_gather`` brings every device's outputs back. Along a ``data`` axis
    the models' inputs are replicated, and their outputs must agree (``local_batch_grad``
    averages over it), so the first copy is kept.
    """

    def run(*args):
        m = _mesh(devices) if mesh is None else mesh
        if mesh is None and m.devices.size == 1:
            return fn(*args)
        d, n = m.shape[AXIS], _num(args)
        shard = lambda f, i, o: jax.shard_map(  # noqa: E731
            f, mesh=m, in_specs=i, out_specs=o, check_vma=False
        )
        if not n % d:
            return shard(fn, P(AXIS), P(AXIS))(*args)
        full = n - n % d
        if split is not None and not full:
            return shard(split, P(), P())(*args)

        def split_and_rest(*a):  # this device's share of the first `full`, then the rest split
            rest = jax.tree.map(lambda x: x[full:], a)
            return _concat(_gather(fn(*_mine(a, full // d))), split(*rest))

        def padded(*a):  # copies of the last model pad N to a multiple of d
            a = jax.tree.map(lambda x: jnp.concatenate([x] + [x[-1:]] * (-n % d)), a)
            return _gather(fn(*_mine(a, -(-n // d))))

        if split is not None:
            return shard(split_and_rest, P(), P())(*args)
        return jax.tree.map(lambda x: x[:n], shard(padded, P(), P())(*args))  # copies dropped

    return run


def _mine(args, k: int):
    """Inside shard_map: this device's k models, rows [i k, (i + 1) k) for i = axis_index(AXIS)."""
    start = lax.axis_index(AXIS) * k
    return jax.tree.map(lambda x: lax.dynamic_slice_in_dim(x, start, k), args)


def _inner(fn: Callable, split: Callable | None, group: int | None) -> tuple:
    """(fn, split) each over a leading model axis, grouped alike (split None stays None)."""
    return _grouped(fn, group), None if split is None else _grouped(split, group)


def _mapped(
    fn: Callable,
    strategy: str,
    devices=None,
    mesh=None,
    vmap: bool = True,
    split: Callable | None = None,
) -> Callable:
    """fn over a leading model axis with ``strategy``; ``vmap=False``: lax.map where it vmaps.

    ``split``: fn with its batch split over ``SPLIT``, for the models a sharded round leaves.
    """
    if mesh is None:
        _parse(resolve(strategy, devices=devices))  # a bad name fails here, not at the call

        def run(*args):  # resolved at the call (under jit: at trace time), when N is known
            name = resolve(strategy, devices=devices, num_models=_num(args))
            sharded, group = _parse(name)
            inner, rest = _inner(fn, split, group if vmap else 1)
            return _sharded(inner, devices, None, rest)(*args) if sharded else inner(*args)

        return run
    if AXIS not in mesh.axis_names:
        raise ValueError(f"mesh: needs a {AXIS!r} axis (sweep.make_mesh), got {mesh.axis_names}")
    if strategy == "auto":  # a mesh asks for sharding; inside a shard, what the backend likes
        strategy = "sharded" if jax.default_backend() == "cpu" else "sharded:vmap"
    sharded, group = _parse(strategy)
    if not sharded:
        raise ValueError(f"mesh= needs a sharded strategy, got strategy={strategy!r}")
    inner, rest = _inner(fn, split, group if vmap else 1)
    return _sharded(inner, None, mesh, rest)


def grid(**axes) -> dict:
    """The Cartesian product of named value lists, flattened: {name: [N] list}.

    grid(seed=[0, 1], forget_bias=[0.0, 1.0]) gives seeds [0, 0, 1, 1] and biases
    [0.0, 1.0, 0.0, 1.0] (the last axis varies fastest).
    """
    names = list(axes)
    rows = list(itertools.product(*(axes[n] for n in names)))
    return {n: [row[i] for row in rows] for i, n in enumerate(names)}


def init_models(
    init_one: Callable, hparams, strategy: str = "auto", devices=None, mesh=None
) -> Callable:
    """() -> the stacked state of N models, ``init_one(hparams_i)`` each.

    Args:
        init_one: hparams_i -> TrainState of one model (jit-traceable: hparams_i are arrays).
        hparams: a pytree of arrays with a leading model axis N (e.g. seeds, forget biases).
        strategy: a name of ``STRATEGIES``, e.g. "auto", "vmap", "map", "vmap:4", "sharded".
        devices: the devices of a "sharded" strategy (default: ``jax.devices()``).
        mesh: for a "sharded" strategy, a ``make_mesh(data=...)`` mesh instead of ``devices``.
    """
    # Models one at a time, never vmapped, whatever the strategy (its split over devices stays):
    # the built-in cells' orthogonal init is a QR decomposition, and a vmapped QR runs as
    # jaxlib's batched LAPACK kernel, which on the CPU fans the batch out over XLA's intra-op
    # pool from a thread of that same pool and waits for it. With two cores the pool can run dry
    # and the process waits for ever (every thread in a futex, the waiter in
    # ``jax::ParallelBatchMap``): the "vmap sweeps hang" of scripts/bench_sweeps.py. Init runs
    # once per run, so going model by model costs nothing that shows.
    mapped = _mapped(init_one, strategy, devices, mesh, vmap=False)
    return lambda: mapped(hparams)


def step_models(
    step_one: Callable,
    hparams,
    strategy: str = "auto",
    devices=None,
    mesh=None,
    split_one: Callable | None = None,
) -> Callable:
    """state -> (state, metrics) for N models; ``step_one(state_i, hparams_i)`` each.

    Args:
        step_one: (state_i, hparams_i) -> (state_i, metrics_i) of one model.
        hparams: a pytree of arrays with a leading model axis N.
        strategy: a name of ``STRATEGIES``, e.g. "auto", "vmap", "map", "vmap:4", "sharded".
        devices: the devices of a "sharded" strategy (default: ``jax.devices()``).
        mesh: for a "sharded" strategy, a ``make_mesh(data=...)`` mesh instead of ``devices``;
            with a ``data`` axis of size > 1, step_one must average its gradients over it
            (``parallel.local_batch_grad``).
        split_one: optional, the same step with its batch split over every device of the mesh:
            built with ``grad_fn=parallel.local_batch_grad(loss_fn, sweep.SPLIT)``. A sharded
            strategy then runs the N mod D models that do not fill a round data parallel
            instead of padding. Those models equal their separate runs to float32 tolerance,
            as data parallelism does, except per-example randomness in the loss (dropout),
            which differs per device.
    """
    mapped = _mapped(step_one, strategy, devices, mesh, split=split_one)
    return lambda states: mapped(states, hparams)


def num_models(hparams) -> int:
    sizes = {x.shape[0] for x in jax.tree.leaves(hparams)}
    if len(sizes) != 1:
        raise ValueError(f"hparams: every leaf needs the same leading model axis, got {sizes}")
    return sizes.pop()
