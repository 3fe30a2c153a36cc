"""Data parallelism over every device of every host: a ``data`` mesh axis and ``shard_map``.

The batch is split along ``data`` (in_specs P('data')), params are replicated (P()). Each shard
takes the gradient of its own mean loss and ``lax.pmean`` averages them, which equals the
gradient of the global mean loss when every shard holds B / n examples. A loss that is a mean
over something the shards hold unequal amounts of (the real tokens of padded sequences) names
that count (``weight=``): shard i then counts w_i / sum(w), so the loss, its aux and the
gradient equal the one-device mean over all of them, however the tokens fall on the devices.

Why check_vma=False: rnnlab's scans start from a ``jnp.zeros`` carry, which shard_map's
varying-manual-axes check rejects inside a scan. With check_vma=False the per-shard gradients are
per-shard values, so ``pmean`` of the gradients is the right average; with check_vma=True the
gradient would already be a sum and pmean would not divide (8x gradients on 8 devices, hidden by
Adam). ``tests/train/test_parallel.py`` compares gradients with one device.
"""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
from jax import lax
from jax.sharding import AxisType, NamedSharding
from jax.sharding import PartitionSpec as P

AXIS = "data"


def make_mesh(devices=None) -> jax.sharding.Mesh:
    """A 1-d ``data`` mesh over ``devices`` (default: every device of every process)."""
    devices = jax.devices() if devices is None else list(devices)
    return jax.make_mesh((len(devices),), (AXIS,), axis_types=(AxisType.Auto,), devices=devices)


def replicated(mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


def batch_sharding(mesh) -> NamedSharding:
    return NamedSharding(mesh, P(AXIS))


def shard_batch(tree, mesh=None):
    """Inside jit: has XLA split each leaf's leading (batch) axis over the mesh's ``data`` devices.

    For evaluation and decoding, which take the replicated params and a batch of their own:
    without it every device computes the whole batch (on CPU devices, which share the cores,
    the same work once per device). Leaves whose leading size the devices do not divide, and
    scalars, are left as they are; on one device this is the identity.

    Args:
        tree: arrays with a leading batch axis (traced or constant).
        mesh: the mesh (default: ``make_mesh()``, every device).
    """
    mesh = make_mesh() if mesh is None else mesh
    n = mesh.devices.size
    if n == 1:
        return tree
    sharding = batch_sharding(mesh)

    def split(x):
        if jnp.ndim(x) == 0 or jnp.shape(x)[0] % n:
            return x
        return lax.with_sharding_constraint(x, sharding)

    return jax.tree.map(split, tree)


def check_batch_size(batch_size: int, mesh, argument: str = "batch_size") -> None:
    """Raises ValueError unless ``batch_size`` splits evenly over the mesh's devices."""
    n = mesh.devices.size
    if batch_size % n:
        raise ValueError(f"{argument}={batch_size} is not divisible by the {n} devices")


def _pop(aux: dict, names, argument: str) -> tuple[dict, dict]:
    """(aux without ``names``, {name: aux[name]}); a KeyError naming ``argument`` if one is
    missing."""
    missing = [name for name in names if name not in aux]
    if missing:
        raise KeyError(f"{argument}: {missing} are not in the loss's aux {sorted(aux)}")
    rest = dict(aux)
    return rest, {name: rest.pop(name) for name in names}


def _average(loss, aux, grads, axis: str, weight: str | None):
    """(loss, aux) and grads averaged over ``axis``: ``lax.pmean``, or weighted by aux[weight].

    With ``weight``, shard i counts aux[weight]_i / sum, and aux[weight] comes back summed.
    """
    if weight is None:
        return lax.pmean(((loss, aux), grads), axis)
    aux, popped = _pop(aux, (weight,), "weight")
    count = jnp.asarray(popped[weight], jnp.float32)
    total = lax.psum(count, axis)
    share = count / jnp.maximum(total, 1)

    def scaled(x):
        x = jnp.asarray(x)
        x = x if jnp.issubdtype(x.dtype, jnp.floating) else x.astype(jnp.float32)
        return x * share.astype(x.dtype)

    (loss, aux), grads = lax.psum(jax.tree.map(scaled, ((loss, aux), grads)), axis)
    return (loss, {**aux, weight: total}), grads


def data_parallel_grad(loss_fn, mesh, sharded_aux: tuple[str, ...] = (), weight: str | None = None):
    """The gradient of ``loss_fn`` over a batch split across ``mesh``.

    Args:
        loss_fn: (params, batch, key) -> (loss, aux), a mean over the batch. Every batch leaf
            with a leading axis is split along it; scalar leaves (a flag such as "the streams
            restart here") go to every device whole.
        mesh: a mesh with a ``data`` axis.
        sharded_aux: names of entries of the aux dict that hold one row per example (the state a
            truncated-BPTT step ends in, per stream): they are not averaged but put back together
            in batch order, so they equal the one-device values.
        weight: name of an aux entry holding what the shard's loss is a mean over (e.g. its
            real target tokens): the shards' loss, aux and gradients are then averaged weighted
            by it, which makes a per-token mean equal the one-device mean over every token of the
            batch (an unweighted average of the shards' means would not, for padded sequences of
            unequal lengths). aux[weight] comes back summed. None: each shard counts 1 / n.

    Returns:
        grad_fn(params, batch, key) -> ((loss, aux), grads), averaged over the devices and
        replicated, except ``sharded_aux`` ([B, ...], split along ``data``). Shard i uses
        fold_in(key, i), so dropout masks differ between shards.
    """

    def local(params, batch, key):
        key = jax.random.fold_in(key, lax.axis_index(AXIS))
        (loss, aux), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, batch, key)
        aux, rows = _pop(aux, sharded_aux, "sharded_aux")
        return _average(loss, aux, grads, AXIS, weight), rows

    def grad_fn(params, batch, key):
        batch_specs = jax.tree.map(lambda x: P(AXIS) if jnp.ndim(x) else P(), batch)
        run = jax.shard_map(
            local,
            mesh=mesh,
            in_specs=(P(), batch_specs, P()),
            out_specs=(P(), P(AXIS)),
            check_vma=False,
        )
        ((loss, aux), grads), rows = run(params, batch, key)
        return (loss, {**aux, **rows}), grads

    return grad_fn


def local_batch_grad(loss_fn, axis: str = AXIS, weight: str | None = None):
    """The gradient of ``loss_fn`` over a batch split along ``axis`` of an enclosing shard_map.

    For a step that already runs inside ``shard_map`` with the whole batch on every device of
    ``axis`` (a sweep on a ``sweep.make_mesh(data=d)`` mesh, where the data source of each model
    runs inside its step): device i takes rows [i * B / d, (i + 1) * B / d), uses
    fold_in(key, i) as ``data_parallel_grad`` does, and ``lax.pmean`` averages over ``axis``.

    Args:
        loss_fn: (params, batch, key) -> (loss, aux), a mean over the batch.
        axis: the mesh axis the batch is split over.
        weight: as in ``data_parallel_grad``: an aux entry the shards are weighted by.

    Returns:
        grad_fn(params, batch, key) -> ((loss, aux), grads), averaged over ``axis``.
    """
    value_and_grad = jax.value_and_grad(loss_fn, has_aux=True)

    def grad_fn(params, batch, key):
        n, i = lax.axis_size(axis), lax.axis_index(axis)
        sizes = {x.shape[0] for x in jax.tree.leaves(batch)}
        if len(sizes) != 1 or sizes.pop() % n:
            raise ValueError(
                f"batch: every leaf needs the same leading size, divisible by the {n} devices "
                f"of mesh axis {axis!r}; got {[x.shape for x in jax.tree.leaves(batch)]}"
            )
        local = jax.tree.map(
            lambda x: lax.dynamic_slice_in_dim(x, i * (len(x) // n), len(x) // n), batch
        )
        key = jax.random.fold_in(key, i)
        (loss, aux), grads = value_and_grad(params, local, key)
        return _average(loss, aux, grads, axis, weight)

    return grad_fn


# --- several processes -----------------------------------------------------------------------

ENV = {
    "coordinator_address": "RNNLAB_COORDINATOR_ADDRESS",
    "num_processes": "RNNLAB_NUM_PROCESSES",
    "process_id": "RNNLAB_PROCESS_ID",
}


def initialize_distributed(
    coordinator_address: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
    timeout_s: int | None = None,
) -> bool:
    """Calls ``jax.distributed.initialize`` when more than one process is asked for.

    Unset arguments come from RNNLAB_COORDINATOR_ADDRESS, RNNLAB_NUM_PROCESSES and
    RNNLAB_PROCESS_ID; ``timeout_s`` (initialisation, heartbeat and shutdown) from
    RNNLAB_DISTRIBUTED_TIMEOUT_S, else 300. Must run before any JAX computation. Returns whether
    it initialised.
    """
    timeout_s = timeout_s or int(os.environ.get("RNNLAB_DISTRIBUTED_TIMEOUT_S", 300))
    coordinator_address = coordinator_address or os.environ.get(ENV["coordinator_address"])
    if num_processes is None and os.environ.get(ENV["num_processes"]):
        num_processes = int(os.environ[ENV["num_processes"]])
    if process_id is None and os.environ.get(ENV["process_id"]):
        process_id = int(os.environ[ENV["process_id"]])
    if not num_processes or num_processes == 1:
        return False
    if coordinator_address is None or process_id is None:
        raise ValueError(
            f"num_processes={num_processes} needs coordinator_address and process_id "
            f"(or ${ENV['coordinator_address']} and ${ENV['process_id']})"
        )
    if not 0 <= process_id < num_processes:
        raise ValueError(f"process_id={process_id}: expected 0 <= process_id < {num_processes}")
    jax.distributed.initialize(
        coordinator_address,
        num_processes,
        process_id,
        initialization_timeout=timeout_s,
        heartbeat_timeout_seconds=max(10, timeout_s),
        shutdown_timeout_seconds=max(10, timeout_s),
    )
    return True
