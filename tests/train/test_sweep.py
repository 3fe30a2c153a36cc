"""Sweeps: N models in one program equal N separate runs, under every strategy.

The sharded strategies need several devices, fixed per process: ``python -m
tests.train.test_sweep`` runs them on 2 CPU devices and prints JSON (a subprocess test below).
"""

import json
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

from rnnlab import cells
from rnnlab.data import tasks
from rnnlab.models import sequence
from rnnlab.train import loop, parallel, state, step, sweep, writers
from tests.train import helpers, toy

STEPS = 3


def lstm_adding(axis=None):
    """init_one(h), step_one(state, h) for an LSTM on adding; h = {"seed", "forget_bias"}.

    axis: the mesh axis (or axes) the batch is split over, the gradient averaged; None: none.
    """
    task = tasks.get("adding")
    tx = step.optimizer("adam", 1e-2)

    def parts(h):
        k_init, k_train, k_data = jax.random.split(jax.random.key(h["seed"]), 3)
        cell = cells.get("lstm", forget_bias=h["forget_bias"])
        model = sequence.make(cell, input_size=2, hidden_size=8, output_size=1)
        return model, tasks.source(task, k_data, 8, 10), (k_init, k_train)

    def init_one(h):
        model, source, (k_init, k_train) = parts(h)
        return state.create(model.init(k_init), tx, k_train, source.init())

    def step_one(s, h):
        model, source, _ = parts(h)

        def loss_fn(params, batch, key):
            return task.loss(model.apply(params, batch["inputs"]), batch), {}

        grad_fn = None if axis is None else parallel.local_batch_grad(loss_fn, axis)
        return step.make_step(loss_fn, tx, source.next, clip_norm=1.0, grad_fn=grad_fn)(s)

    return init_one, step_one


@pytest.mark.slow  # ~1 minute on 2 busy cores; the toy test below checks the same quickly
@pytest.mark.parametrize("strategy", ["vmap", "map"])
def test_each_lstm_of_a_forget_bias_sweep_equals_its_separate_run(strategy):
    init_one, step_one = lstm_adding()
    grid = sweep.grid(seed=[0, 1], forget_bias=[0.0, 2.0])
    hparams = {"seed": jnp.array(grid["seed"]), "forget_bias": jnp.array(grid["forget_bias"])}
    n = sweep.num_models(hparams)
    states = jax.jit(sweep.init_models(init_one, hparams, strategy))()
    run = jax.jit(sweep.step_models(step_one, hparams, strategy))
    for _ in range(STEPS):
        states, metrics = run(states)
    assert metrics["loss"].shape == (n,)
    one_init, one_step = jax.jit(init_one), jax.jit(step_one)
    for i in range(n):
        h = jax.tree.map(lambda x, i=i: x[i], hparams)
        s = one_init(h)
        for _ in range(STEPS):
            s, m = one_step(s, h)
        for a, b in zip(jax.tree.leaves(s.params), jax.tree.leaves(states.params), strict=True):
            np.testing.assert_allclose(np.asarray(b[i]), np.asarray(a), rtol=2e-5, atol=2e-6)
        np.testing.assert_allclose(float(metrics["loss"][i]), float(m["loss"]), rtol=1e-5)
    # The hyperparameter reached each model: forget-gate biases differ by 2 at init.
    b = np.asarray(jax.jit(sweep.init_models(init_one, hparams))().params["rnn"][0]["b"])
    assert np.allclose(b[1, 8:16] - b[0, 8:16], 2.0)


def toy_models():
    """Linear regression models; h = {"seed", "lr"}."""

    def init_one(h):
        k_init, k_train, k_data = jax.random.split(jax.random.key(h["seed"]), 3)
        params = {"w": 0.1 * jax.random.normal(k_init, (3,)), "b": jnp.zeros(())}
        return state.create(
            params, step.optimizer("sgd", h["lr"]), k_train, toy.source(k_data).init()
        )

    def step_one(s, h):
        tx = step.optimizer("sgd", h["lr"])
        return step.make_step(toy.loss_fn, tx, toy.source(None).next)(s)

    return init_one, step_one


@pytest.mark.parametrize("strategy", ["vmap", "map", "auto"])
def test_sweep_in_the_loop_writes_per_model_metrics_and_equals_separate_runs(tmp_path, strategy):
    init_one, step_one = toy_models()
    hparams = {"seed": jnp.array([0, 1, 2]), "lr": jnp.array([0.0, 0.1, 0.2])}
    final = loop.train(
        workdir=tmp_path,
        init_state=sweep.init_models(init_one, hparams, strategy),
        train_step=sweep.step_models(step_one, hparams, strategy),
        steps=4,
        log_every=2,
        checkpoint_every=4,
        config={"sweep": "lr"},
        models=3,
        progress=False,
    )
    assert final.step.shape == (3,)
    records = writers.read_metrics(tmp_path)
    assert [(r["step"], r["model"]) for r in records] == [(s, m) for s in (2, 4) for m in range(3)]
    assert len({r["loss"] for r in records if r["step"] == 4}) == 3
    model_0 = writers.read_metrics(tmp_path, model=0)
    assert len(model_0) == 2
    # lr = 0 leaves model 0's params at their init.
    init = jax.jit(sweep.init_models(init_one, hparams))()
    np.testing.assert_array_equal(np.asarray(final.params["w"][0]), np.asarray(init.params["w"][0]))
    assert not np.array_equal(np.asarray(final.params["w"][1]), np.asarray(init.params["w"][1]))
    # Each model equals its separate run.
    one_init, one_step = jax.jit(init_one), jax.jit(step_one)
    for i in range(3):
        h = jax.tree.map(lambda x, i=i: x[i], hparams)
        s = one_init(h)
        for _ in range(4):
            s, _ = one_step(s, h)
        for a, b in zip(jax.tree.leaves(s.params), jax.tree.leaves(final.params), strict=True):
            np.testing.assert_allclose(np.asarray(b[i]), np.asarray(a), rtol=1e-6, atol=1e-7)


def separate_runs(init_one, step_one, hparams, steps):
    """The params of each model trained alone, a list of N pytrees."""
    one_init, one_step = jax.jit(init_one), jax.jit(step_one)
    out = []
    for i in range(sweep.num_models(hparams)):
        h = jax.tree.map(lambda x, i=i: x[i], hparams)
        s = one_init(h)
        for _ in range(steps):
            s, _ = one_step(s, h)
        out.append(s.params)
    return out


def max_diff(stacked, separate) -> float:
    """Max |sweep - separate| over every model and leaf."""
    return max(
        float(np.max(np.abs(np.asarray(b[i]) - np.asarray(a))))
        for i, params in enumerate(separate)
        for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(stacked), strict=True)
    )


def test_strategy_names_parse_and_auto_follows_the_backend():
    assert "vmap:4" in sweep.STRATEGIES and "sharded:vmap:3" in sweep.STRATEGIES
    assert "auto" in sweep.STRATEGIES and sweep.describe("auto") == "map on cpu"
    assert "vmap:0" not in sweep.STRATEGIES and "shard" not in sweep.STRATEGIES
    assert sweep.resolve("auto", backend="gpu") == "vmap"
    assert sweep.resolve("auto", backend="cpu", devices=[0]) == "map"
    assert sweep.resolve("auto", backend="cpu", devices=[0, 1]) == "sharded"
    assert sweep.resolve("auto", backend="cpu", devices=[0, 1], num_models=4) == "sharded"
    assert sweep.resolve("auto", backend="cpu", devices=[0, 1], num_models=3) == "map"
    with pytest.raises(ValueError, match="strategy='vmap:x'"):
        sweep.step_models(lambda s, h: (s, {}), {"a": jnp.zeros(2)}, "vmap:x")


def test_a_mesh_needs_a_model_axis_a_divisor_and_a_sharded_strategy():
    devices = jax.devices()[:1]
    with pytest.raises(ValueError, match="data=2: expected a positive divisor of the 1 devices"):
        sweep.make_mesh(data=2, devices=devices)
    mesh = sweep.make_mesh(devices=devices)
    with pytest.raises(ValueError, match="mesh= needs a sharded strategy, got strategy='map'"):
        sweep.step_models(lambda s, h: (s, {}), {"a": jnp.zeros(2)}, "map", mesh=mesh)
    with pytest.raises(ValueError, match="needs a 'model' axis"):
        sweep.step_models(lambda s, h: (s, {}), {"a": jnp.zeros(2)}, mesh=parallel.make_mesh())


def test_local_batch_grad_rejects_a_batch_the_data_axis_does_not_split():
    mesh = jax.make_mesh((1,), ("data",), axis_types=(jax.sharding.AxisType.Auto,))
    grad_fn = parallel.local_batch_grad(lambda p, b, k: (jnp.mean(b["x"] * p), {}))
    ok = jax.shard_map(
        lambda p, b: grad_fn(p, b, jax.random.key(0))[1], mesh=mesh, in_specs=P(), out_specs=P()
    )
    np.testing.assert_allclose(ok(jnp.float32(2.0), {"x": jnp.arange(4.0)}), 1.5)
    bad = {"x": jnp.zeros(4), "y": jnp.zeros(3)}
    with pytest.raises(ValueError, match="same leading size"):
        jax.shard_map(
            lambda p, b: grad_fn(p, b, jax.random.key(0))[1], mesh=mesh, in_specs=P(), out_specs=P()
        )(jnp.float32(2.0), bad)


def test_vmap_in_groups_equals_separate_runs_with_a_remainder_group():
    init_one, step_one = toy_models()
    hparams = {"seed": jnp.arange(5), "lr": jnp.linspace(0.0, 0.4, 5)}
    states = jax.jit(sweep.init_models(init_one, hparams, "vmap:2"))()
    run = jax.jit(sweep.step_models(step_one, hparams, "vmap:2"))  # groups 2, 2 and 1
    for _ in range(3):
        states, metrics = run(states)
    assert metrics["loss"].shape == (5,)
    assert max_diff(states.params, separate_runs(init_one, step_one, hparams, 3)) < 1e-6


@pytest.mark.parametrize("strategy", ["map", "auto"])
def test_a_sweep_of_one_model_equals_its_run_and_keeps_the_model_axis(strategy):
    init_one, step_one = toy_models()
    hparams = {"seed": jnp.array([3]), "lr": jnp.array([0.2])}
    states = jax.jit(sweep.init_models(init_one, hparams, strategy))()
    run = jax.jit(sweep.step_models(step_one, hparams, strategy))
    for _ in range(3):
        states, metrics = run(states)
    assert metrics["loss"].shape == (1,) and states.params["w"].shape == (1, 3)
    assert max_diff(states.params, separate_runs(init_one, step_one, hparams, 3)) < 1e-6


def test_sharded_strategies_and_model_by_data_meshes_equal_separate_runs():
    proc = helpers.start(["-m", "tests.train.test_sweep"], JAX_NUM_CPU_DEVICES="4")
    code, out = helpers.finish(proc, timeout=300)
    assert code == 0, out[-3000:]
    result = json.loads(out.strip().splitlines()[-1])
    assert result["devices"] == 4 and result["auto"] == "sharded", result
    assert result["mesh_shapes"] == [[4, 1], [2, 2], [1, 4]], result
    for name, diff in result["diff"].items():
        assert diff < 2e-6, (name, result)
    assert result["steps"] == [4, 4, 4]  # resumed from the step-2 checkpoint, to step 4
    assert result["models_logged"] == [0, 1, 2]
    # The split models average their gradients over the devices; the padded ones never do.
    assert all(count > 0 for count in result["split_all_reduces"]), result
    assert result["split_permutes"] == [0, 0, 0] and result["padded_permutes"] == 0, result
    assert result["gather_exact"] and result["gather_all_gathers"] == 2, result  # 32 and 8 bits


def _four_devices(workdir) -> dict:
    """On 4 CPU devices: sharded sweeps (3 models, padded) against separate runs."""
    assert jax.device_count() == 4, jax.devices()
    diff = {}
    # The toy through the loop, stopped after step 2 and resumed to step 4.
    init_one, step_one = toy_models()
    hparams = {"seed": jnp.array([0, 1, 2]), "lr": jnp.array([0.05, 0.1, 0.2])}
    for steps in (2, 4):
        final = loop.train(
            workdir=workdir,
            init_state=sweep.init_models(init_one, hparams, "sharded"),
            train_step=sweep.step_models(step_one, hparams, "sharded"),
            steps=steps,
            log_every=2,
            checkpoint_every=2,
            config={"sweep": "lr"},
            models=3,
            progress=False,
        )
    diff["toy_loop_resumed"] = max_diff(final.params, separate_runs(init_one, step_one, hparams, 4))
    # sharded:vmap:2 splits 4 models into 2 per device, vmapped in a group of 2.
    states = jax.jit(sweep.init_models(init_one, hparams, "sharded:vmap:2"))()
    states, _ = jax.jit(sweep.step_models(step_one, hparams, "sharded:vmap:2"))(states)
    diff["toy_sharded:vmap:2"] = max_diff(
        states.params, separate_runs(init_one, step_one, hparams, 1)
    )
    # LSTMs: a scan inside shard_map.
    init_one, step_one = lstm_adding()
    hparams = {"seed": jnp.array([0, 1, 2]), "forget_bias": jnp.array([0.0, 1.0, 2.0])}
    states = jax.jit(sweep.init_models(init_one, hparams, "sharded"))()
    run = jax.jit(sweep.step_models(step_one, hparams, "sharded"))
    for _ in range(2):
        states, _ = run(states)
    separate = separate_runs(init_one, step_one, hparams, 2)
    diff["lstm_sharded"] = max_diff(states.params, separate)
    padded_permutes = run.lower(states).compile().as_text().count("collective-permute(")
    # (model, data) meshes: each model's batch of 8 split over 1, 2 or 4 devices.
    init_one, step_one = lstm_adding(axis=parallel.AXIS)
    shapes = []
    for data in (1, 2, 4):
        mesh = sweep.make_mesh(data=data)
        shapes.append([mesh.shape["model"], mesh.shape["data"]])
        states = jax.jit(sweep.init_models(init_one, hparams, mesh=mesh))()
        run = jax.jit(sweep.step_models(step_one, hparams, mesh=mesh))
        for _ in range(2):
            states, metrics = run(states)
        assert metrics["loss"].shape == (3,)
        diff[f"lstm_mesh_data{data}"] = max_diff(states.params, separate)
    # split_one: the 3 models of a round short run data parallel over all 4 devices (each
    # device 2 of the 8 examples), alone (N = 3) and after a full round (N = 5 + 2 = 7 on a
    # (2, 2) mesh: 1 model left, split over 4 devices); the result of each equals its run.
    init_one, step_one = lstm_adding()
    _, split_one = lstm_adding(axis=sweep.SPLIT)
    seeds = {3: [0, 1, 2], 7: [0, 1, 2, 3, 4, 5, 6]}
    split_traces, permutes = [], []
    for n, mesh in ((3, None), (7, None), (7, sweep.make_mesh(data=2))):
        hp = {"seed": jnp.array(seeds[n]), "forget_bias": jnp.linspace(0.0, 2.0, n)}
        mesh_step = lstm_adding(axis=parallel.AXIS)[1] if mesh is not None else step_one
        states = jax.jit(sweep.init_models(init_one, hp, "sharded", mesh=mesh))()
        run = jax.jit(sweep.step_models(mesh_step, hp, "sharded", mesh=mesh, split_one=split_one))
        for _ in range(2):
            states, metrics = run(states)
        assert metrics["loss"].shape == (n,)
        lowered = run.lower(states)
        split_traces.append(str(lowered.as_text()).count("all_reduce"))
        # The state comes in replicated (N does not split over the devices): each device takes
        # its rows inside the program; sliced outside, XLA resharded every leaf by a permute.
        permutes.append(lowered.compile().as_text().count("collective-permute("))
        name = f"lstm_split_n{n}" + ("_mesh" if mesh is not None else "")
        diff[name] = max_diff(states.params, separate_runs(init_one, step_one, hp, 2))
    # _gather, what replicates the outputs of N = 3 or 7 models: every leaf bit for bit (NaN,
    # -0.0, the smallest subnormal, typed keys), one all-gather per element width.
    tree = {
        "f": jnp.array([[0.0, -0.0], [jnp.nan, jnp.inf], [1.5, -2.0], [3.0, 1e-45]]),
        "i": jnp.array([-1, 0, 1, 2**31 - 1], jnp.int32),
        "b": jnp.array([True, False, True, True]),
        "u8": jnp.arange(8, dtype=jnp.uint8).reshape(4, 2),
        "key": jax.random.split(jax.random.key(0), 4),
    }
    gather = jax.jit(
        jax.shard_map(
            sweep._gather, mesh=sweep._mesh(None), in_specs=P(sweep.AXIS), out_specs=P(),
            check_vma=False,
        )
    )  # fmt: skip
    gathered = gather(tree)
    raw = lambda x: np.asarray(  # noqa: E731
        jax.random.key_data(x) if jnp.issubdtype(x.dtype, jax.dtypes.prng_key) else x
    )
    gather_exact = all(
        raw(a).dtype == raw(b).dtype and raw(a).tobytes() == raw(b).tobytes()
        for a, b in zip(jax.tree.leaves(tree), jax.tree.leaves(gathered))
    )
    return {
        "gather_exact": gather_exact,
        "gather_all_gathers": gather.lower(tree).as_text().count('stablehlo.all_gather"'),
        "split_all_reduces": split_traces,
        "split_permutes": permutes,
        "padded_permutes": padded_permutes,
        "devices": jax.device_count(),
        "auto": sweep.resolve("auto"),
        "diff": diff,
        "steps": [int(s) for s in np.asarray(final.step)],
        "models_logged": sorted({r["model"] for r in writers.read_metrics(workdir)}),
        "mesh_shapes": shapes,
    }


if __name__ == "__main__":
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        print(json.dumps(_four_devices(tmp)))
    sys.exit(0)
