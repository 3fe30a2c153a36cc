"""Pascanu (2013) training: Omega against a direct computation, clipping bounds the update,
spike detection against a numpy reference, a tiny grid end to end (with exact resume), and the
split step of a sharded sweep (``python -m tests.analysis.test_pascanu_training`` runs that on 2
CPU devices and prints JSON; a subprocess test below)."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import optax

from rnnlab.analysis import pascanu_training as pt
from rnnlab.train import step
from tests.train import helpers


def _case(init, key=0, T=5, B=2, D=3, H=4, O=2):
    cell = pt.make_cell(init)
    k_p, k_x, k_y = jax.random.split(jax.random.key(key), 3)
    params = pt.init_params(cell, init, k_p, D, H, O)
    params = jax.tree.map(lambda a: jnp.asarray(a * 10.0, jnp.float64), params)  # not tiny
    xs = jax.random.normal(k_x, (B, T, D), jnp.float64)
    batch = {"inputs": xs, "targets": jax.random.randint(k_y, (B,), 0, O)}
    return cell, params, batch


def _loss(params, h, batch):
    logits = pt.readout(params, h)
    return optax.softmax_cross_entropy_with_integer_labels(logits, batch["targets"]).mean()


def _direct(p, xs, targets, g_fixed=None):
    """Omega in numpy float64 for a sigmoid RNN, by the closed forms: h_t = sigmoid(a_t),
    dh_{k+1}/dh_k = diag(phi'(a_{k+1})) W_h^T, g_k by backpropagation written out by hand."""
    B, T, _ = xs.shape
    h, hs, phis = np.zeros((B, p["w_h"].shape[0])), [], []
    for t in range(T):
        h = 1.0 / (1.0 + np.exp(-(xs[:, t] @ p["w_x"] + h @ p["w_h"] + p["b"])))
        hs.append(h)
        phis.append(h * (1.0 - h))  # phi'(a_t)
    logits = hs[-1] @ p["w_o"] + p["b_o"]
    probs = np.exp(logits - logits.max(1, keepdims=True))
    probs /= probs.sum(1, keepdims=True)
    gs = [None] * T
    gs[-1] = (probs - np.eye(probs.shape[1])[targets]) / B @ p["w_o"].T  # dE/dh_T
    for t in range(T - 2, -1, -1):
        gs[t] = (gs[t + 1] * phis[t + 1]) @ p["w_h"].T
    gs = gs if g_fixed is None else g_fixed
    omega = 0.0
    for k in range(T - 1):  # hs[k] = h_{k+1}: the term of dh_{k+2}/dh_{k+1} and g_{k+2}
        g = gs[k + 1]
        v = (g * phis[k + 1]) @ p["w_h"].T  # g dh_{k+2}/dh_{k+1}
        omega += np.sum((np.linalg.norm(v, axis=1) / np.linalg.norm(g, axis=1) - 1.0) ** 2)
    return omega / B, gs


def test_omega_equals_direct_computation():
    with jax.enable_x64(True):
        cell, params, batch = _case("sigmoid")
        task = pt.temporal_order()._replace(
            metrics=lambda out, b: {"loss": _loss({"w_o": jnp.eye(2), "b_o": 0.0}, out, b)}
        )
        gradients = jax.jit(pt.gradients, static_argnums=(0, 1, 4))  # one compilation
        loss, aux, grads, total = gradients(cell, task, params, batch, 4.0)
        flat = lambda p: {**{k: np.asarray(v) for k, v in p["cell"].items()},  # noqa: E731
                          "w_o": np.asarray(p["w_o"]), "b_o": np.asarray(p["b_o"])}  # fmt: skip
        xs, targets = np.asarray(batch["inputs"]), np.asarray(batch["targets"])
        direct, gs = _direct(flat(params), xs, targets)
        np.testing.assert_allclose(aux["omega"], direct, rtol=1e-10)
        assert direct > 1e-3  # a case where Omega is not trivially zero
        # The probes give dE/dh_k for every k in the same backward pass as dE/dtheta.
        probes = jnp.zeros(xs.shape[1::-1] + (4,))  # [T, B, H]
        state_grads = jax.grad(
            lambda p: _loss(params, pt.unroll(cell, params, batch["inputs"], p)[-1], batch)
        )(probes)
        np.testing.assert_allclose(state_grads, np.stack(gs), rtol=1e-10, atol=1e-15)
        # d Omega / d theta with g_{k+1} held constant (the paper's approximation) against
        # central differences of the direct Omega with the same g fixed.
        got = jax.tree.map(lambda t, g: (t - g) / 4.0, total, grads)  # the Omega part
        rng = np.random.default_rng(0)
        for _ in range(3):
            d = jax.tree.map(lambda a: rng.standard_normal(a.shape), flat(params))
            eps = 1e-6
            shift = lambda s, d=d: {k: v + s * d[k] for k, v in flat(params).items()}  # noqa: E731
            fd = _direct(shift(eps), xs, targets, gs)[0] - _direct(shift(-eps), xs, targets, gs)[0]
            fd /= 2 * eps
            analytic = sum(float(np.sum(np.asarray(v) * d[k])) for k, v in flat(got).items())
            np.testing.assert_allclose(analytic, fd, rtol=1e-6)


def test_clipping_never_lets_an_update_exceed_the_threshold():
    rng = np.random.default_rng(0)
    lr, threshold = 0.1, 1.0
    tx = optax.sgd(lr)
    params = {"w": jnp.zeros((5, 5)), "b": jnp.zeros(5)}
    for scale in (1e-3, 0.5, 1.0, 3.0, 1e4, 1e20):
        grads = {k: jnp.asarray(scale * rng.standard_normal(a.shape)) for k, a in params.items()}
        clipped, metrics = step.clip_gradients(grads, clip_norm=threshold)
        updates, _ = tx.update(clipped, tx.init(params), params)
        norm = float(optax.tree.norm(updates))
        assert norm <= lr * threshold * (1 + 1e-6), (scale, norm)
        if float(metrics["grad_norm"]) <= threshold:  # below the threshold: untouched
            np.testing.assert_allclose(norm, lr * float(metrics["grad_norm"]), rtol=1e-6)


def test_spike_detection_matches_reference_on_a_synthetic_trace():
    rng = np.random.default_rng(1)
    n = 400
    trace = np.exp(0.3 * rng.standard_normal(n) + np.linspace(0.0, 2.0, n))  # slow drift, noise
    injected = [50, 120, 121, 300]
    trace[injected] *= 60.0
    trace[200] = np.inf  # a non-finite step counts as a spike
    mon = pt.monitor_init(40)

    def body(mon, inputs):
        g, t = inputs
        mon, ratio, spike = pt.monitor_update(mon, g, t, 10.0)
        return mon, spike

    mon, spikes = jax.lax.scan(body, mon, (jnp.asarray(trace, jnp.float32), jnp.arange(n)))
    found = (np.flatnonzero(np.asarray(spikes)) + 1).tolist()
    reference = pt.running_median_spikes(trace, 40, 10.0)
    assert found == reference == sorted([t + 1 for t in injected] + [201])
    assert int(mon["spikes"]) == 5 and int(mon["first_spike"]) == 51


def test_tiny_grid_runs_and_resumes_exactly(tmp_path):
    spec = pt.Spec(
        seq_len=10, inits=("smart",), seeds=(0, 1), hidden_size=8, batch_size=4,
        chunk_steps=5, eval_batch_size=50, test_size=200, spike_window=10,
    )  # fmt: skip
    first = pt.train_grid(spec, tmp_path / "a", steps=10)
    resumed = pt.train_grid(spec, tmp_path / "a", steps=20)  # the compilations are reused
    straight = pt.train_grid(spec, tmp_path / "b", steps=20)
    assert first["steps"] == 10 and resumed["steps"] == 20
    assert resumed["models"] == straight["models"]  # exact resume
    assert len(resumed["models"]) == 1 * 3 * 2
    m = resumed["models"][0]
    assert set(m) >= {"init", "method", "seed", "test_error", "solved", "spikes", "skipped"}
    assert 0.0 <= m["test_error"] <= 1.0
    # Clipped models never moved by more than lr * c in one step; unclipped ones report theirs.
    for m in resumed["models"]:
        if m["method"] != "none":
            assert m["max_update_norm"] <= spec.learning_rate * spec.clip_norm * (1 + 1e-5)
    traces = pt.traces(spec, tmp_path / "a")
    assert traces[("smart", "clip", 1)]["steps"] == [5, 10, 15, 20]
    rows = pt.success_table([resumed])
    assert len(rows) == 3 and {r["seeds"] for r in rows} == {2}


# --- the split step of a sharded sweep (2 devices, in a subprocess) ---------------------------


def test_split_gradients_equal_the_whole_batch_and_a_sharded_grid_equals_map():
    proc = helpers.start(["-m", "tests.analysis.test_pascanu_training"], JAX_NUM_CPU_DEVICES="2")
    code, out = helpers.finish(proc, timeout=300)
    assert code == 0, out[-3000:]
    result = json.loads(out.strip().splitlines()[-1])
    assert result["devices"] == 2, result
    # float64: the four averaged results equal those of the whole batch (with Omega).
    assert result["split_diff"] < 1e-12, result
    # 3 models (one group) on 2 devices: one round of 2 and one left over, which runs split (its
    # gradients all-reduced over the devices) instead of padded with a copy.
    assert result["all_reduces"] > 0, result
    # After 3 SGD steps every model's params equal the one-model-at-a-time run (float32);
    # Omega's split is checked above, in float64, so the grid trains without it (faster).
    assert result["sharded_vs_map"] < 1e-5, result


def _two_devices() -> dict:
    """split_gradients inside shard_map against gradients; a 3-model grid sharded and mapped."""
    from jax.sharding import PartitionSpec as P

    from rnnlab.train import sweep

    with jax.enable_x64(True):
        cell, params, batch = _case("smart", B=4)
        task = pt.make_task(pt.Spec())
        whole = jax.jit(lambda p, b: pt.gradients(cell, task, p, b, 4.0))(params, batch)
        split = jax.jit(jax.shard_map(
            lambda p, b: pt.split_gradients(cell, task, p, b, 4.0), mesh=sweep.make_mesh(),
            in_specs=(P(), P()), out_specs=P(), check_vma=False,  # as the sweep's
        ))(params, batch)  # fmt: skip
        diff = max(
            float(jnp.max(jnp.abs(a - b)))
            for a, b in zip(jax.tree.leaves(whole), jax.tree.leaves(split))
        )
    spec = pt.Spec(
        seq_len=10, inits=("smart",), methods=("clip",), seeds=(0, 1, 2), hidden_size=8,
        batch_size=4, chunk_steps=3, eval_batch_size=50, test_size=100, spike_window=10,
    )  # fmt: skip
    params, hlo = {}, ""
    states = jax.jit(pt.program(spec, 0)[0])()  # the strategy changes the step, not the state
    for strategy in ("sharded", "map"):  # one chunk of 3 SGD steps of the 3 models
        chunk_step = pt.program(spec._replace(strategy=strategy), 0)[1]
        compiled = jax.jit(chunk_step).lower(states).compile()
        hlo = compiled.as_text() if strategy == "sharded" else hlo
        params[strategy] = compiled(states)[0].params
    rel = max(
        float(jnp.max(jnp.abs(a - b)) / jnp.max(jnp.abs(b)))
        for a, b in zip(jax.tree.leaves(params["sharded"]), jax.tree.leaves(params["map"]))
    )
    return {
        "devices": jax.device_count(),
        "split_diff": diff,
        "all_reduces": hlo.count("all-reduce("),
        "sharded_vs_map": rel,
    }


if __name__ == "__main__":
    print(json.dumps(_two_devices()))
