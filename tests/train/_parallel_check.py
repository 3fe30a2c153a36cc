"""Run with 8 CPU devices: data-parallel training on 8 devices vs 1, printed as JSON."""

import json

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import PartitionSpec as P

from rnnlab import cells
from rnnlab.data import tasks
from rnnlab.models import sequence
from rnnlab.train import parallel, state, step


def rel(a, b) -> float:
    """max |a - b| relative to max |a|."""
    return float(jnp.max(jnp.abs(a - b)) / (jnp.max(jnp.abs(a)) + 1e-12))


def grad_rel(g1, g) -> float:
    """``rel`` of the worst leaf of two gradient trees."""
    return max(jax.tree.leaves(jax.tree.map(rel, g1, g)))


def setup(mesh):
    task = tasks.get("adding")
    k_init, k_train, k_data = jax.random.split(jax.random.key(0), 3)
    source = tasks.source(task, k_data, 16, 12)
    model = sequence.make(cells.get("lstm"), input_size=2, hidden_size=8, output_size=1)

    def loss_fn(params, batch, key):
        return task.loss(model.apply(params, batch["inputs"]), batch), {}

    lr = step.schedule("constant", 1e-2, 10)
    tx = step.optimizer("adam", lr)
    train_step = step.make_step(
        loss_fn, tx, source.next, clip_norm=1.0, grad_fn=parallel.data_parallel_grad(loss_fn, mesh)
    )
    init = state.create(model.init(k_init), tx, k_train, source.init())
    return loss_fn, source, init, train_step


def train(mesh, steps=5):
    _, _, s, train_step = setup(mesh)
    rep = parallel.replicated(mesh)
    fn = jax.jit(train_step, in_shardings=(rep,), out_shardings=rep)
    s = jax.device_put(s, rep)
    for _ in range(steps):
        s, metrics = fn(s)
    return s, metrics


def sharded_aux_check(loss_fn, mesh, params, batch, key) -> dict:
    """A per-example aux (``sharded_aux``) and a scalar batch leaf, 8 devices against 1.

    The loss doubles where the scalar flag is set, so a flag that did not reach every device
    whole would change the gradient; the per-example rows must come back in batch order.
    """

    def rows_loss(params, batch, key):
        loss, _ = loss_fn(params, batch, key)
        scale = 1.0 + jnp.sum(jax.tree.leaves(params)[0])  # per example, not per shard
        rows = jnp.sum(batch["inputs"], axis=(1, 2)) * scale  # [B]
        return loss * jnp.where(batch["flag"], 2.0, 1.0), {"rows": rows, "mean_row": rows.mean()}

    batch = {**batch, "flag": jnp.array(True)}
    one = jax.jit(jax.value_and_grad(rows_loss, has_aux=True))(params, batch, key)
    grad_fn = parallel.data_parallel_grad(rows_loss, mesh, sharded_aux=("rows",))
    eight = jax.jit(grad_fn)(params, batch, key)
    (l1, a1), g1 = one
    (l8, a8), g8 = eight
    return {
        "rows_shape": [list(a1["rows"].shape), list(a8["rows"].shape)],
        "rows_rel": rel(a1["rows"], a8["rows"]),
        "mean_row_rel": rel(a1["mean_row"], a8["mean_row"]),
        "flag_loss_rel": rel(l1, l8),
        "flag_grad_rel": grad_rel(g1, g8),
    }


def weighted_check(mesh, params, batch, key) -> dict:
    """A mean over real tokens of sequences of unequal lengths, 8 devices against 1.

    The shards hold different numbers of real tokens, so only the token-weighted average of
    their means (``weight="tokens"``) equals the one-device mean; the plain average must not.
    Both ``data_parallel_grad`` and ``local_batch_grad`` (inside a replicated shard_map).
    """
    batch = {"inputs": batch["inputs"], "lengths": jnp.arange(16) % 12 + (jnp.arange(16) < 8)}

    def token_loss(params, batch, key):
        steps = jnp.arange(batch["inputs"].shape[1])
        mask = steps[None, :] < batch["lengths"][:, None]  # [B, T]
        w = params["rnn"][0]["w_x"][:, :3]  # [2, 3]
        per_token = jnp.sum(jnp.tanh(batch["inputs"] @ w) ** 2, -1)  # [B, T]
        tokens = mask.sum()
        loss = jnp.sum(jnp.where(mask, per_token, 0.0)) / jnp.maximum(tokens, 1)
        return loss, {"tokens": tokens}

    (l1, a1), g1 = jax.jit(jax.value_and_grad(token_loss, has_aux=True))(params, batch, key)
    weighted = parallel.data_parallel_grad(token_loss, mesh, weight="tokens")
    (lw, aw), gw = jax.jit(weighted)(params, batch, key)
    (lp, _), gp = jax.jit(parallel.data_parallel_grad(token_loss, mesh))(params, batch, key)
    local = jax.shard_map(
        parallel.local_batch_grad(token_loss, weight="tokens"),
        mesh=mesh,
        in_specs=(P(), P(), P()),
        out_specs=P(),
        check_vma=False,
    )
    (ll, al), gl = jax.jit(local)(params, batch, key)
    return {
        "weighted_loss_rel": rel(l1, lw),
        "weighted_grad_rel": grad_rel(g1, gw),
        "weighted_tokens": [int(a1["tokens"]), int(aw["tokens"]), int(al["tokens"])],
        "local_loss_rel": rel(l1, ll),
        "local_grad_rel": grad_rel(g1, gl),
        "plain_loss_rel": rel(l1, lp),
        "plain_grad_rel": grad_rel(g1, gp),
    }


def shard_batch_check(mesh, loss_fn, params, batch, key) -> dict:
    """Evaluation with replicated params: ``shard_batch`` splits the batch's rows over the devices.

    The compiled program then runs the model on B / 8 rows per device (16 / 8 = 2), where
    without it every device runs all 16; the values are the same.
    """
    rep = parallel.replicated(mesh)
    params = jax.device_put(params, rep)
    whole = jax.jit(lambda p, b: loss_fn(p, b, key)[0], out_shardings=rep)
    split = jax.jit(
        lambda p, b: loss_fn(p, parallel.shard_batch(b, mesh), key)[0], out_shardings=rep
    )
    hlo = {name: f.lower(params, batch).compile().as_text() for name, f in
           (("whole", whole), ("split", split))}  # fmt: skip
    rows = {name: [r for r in (2, 16) if f"f32[{r},12,2]" in text] for name, text in hlo.items()}
    return {"shard_rows": rows, "shard_rel": rel(whole(params, batch), split(params, batch))}


def main():
    assert jax.device_count() == 8, jax.devices()
    one, eight = parallel.make_mesh(jax.devices()[:1]), parallel.make_mesh()
    loss_fn, source, init, _ = setup(eight)
    batch, _ = source.next(source.init())
    key = jax.random.key(1)
    (l1, _), g1 = jax.jit(jax.value_and_grad(loss_fn, has_aux=True))(init.params, batch, key)
    (l8, _), g8 = jax.jit(parallel.data_parallel_grad(loss_fn, eight))(init.params, batch, key)
    rows = sharded_aux_check(loss_fn, eight, init.params, batch, key)
    weighted = weighted_check(eight, init.params, batch, key)
    sharded = shard_batch_check(eight, loss_fn, init.params, batch, key)
    s1, m1 = train(one)
    s8, m8 = train(eight)
    p1, p8 = state.to_host(s1.params), state.to_host(s8.params)  # on different meshes
    param_diff = max(
        jax.tree.leaves(jax.tree.map(lambda a, b: float(np.max(np.abs(a - b))), p1, p8))
    )
    print(
        json.dumps(
            {
                "loss_diff": abs(float(l1) - float(l8)),
                "grad_rel": grad_rel(g1, g8),
                "param_diff": param_diff,
                "param_scale": float(max(np.abs(x).max() for x in jax.tree.leaves(p1))),
                "steps": [int(s1.step), int(s8.step)],
                "train_loss": [float(m1["loss"]), float(m8["loss"])],
                **rows,
                **weighted,
                **sharded,
            }
        )
    )


if __name__ == "__main__":
    main()
