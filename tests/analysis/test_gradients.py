"""Probe gradients against closed forms (linear RNN, forget-gate carousel) and finite
differences, for built-in cells and a user cell with a dict carry."""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import rnnlab
from rnnlab.analysis import gradients
from rnnlab.cells import Cell

SIZES = dict(input_size=3, hidden_size=8, batch_size=2, seq_len=40, num_seeds=2)


def _scale(rho):
    return lambda p: {**p, "w_h": p["w_h"] * rho}


def test_linear_rnn_rate_equals_log_rho():
    cell = rnnlab.cells.get("rnn", activation_fn="identity")  # W = Q at init, then rho * Q
    for rho in (0.5, 0.9, 1.1, 1.5):
        curves = gradients.lag_curves(
            cell, jax.random.key(0), **SIZES, transform_params=_scale(rho)
        )
        fit = gradients.fit_rate(curves.lags, curves.log_norm[0])
        assert abs(fit.slope - math.log(rho)) < 1e-4, (rho, fit)
        assert fit.max_residual < 1e-4
        # ||v|| = 1, so the norm itself is rho^k, not only its rate.
        np.testing.assert_allclose(curves.log_norm[0], curves.lags * math.log(rho), atol=1e-4)


def _probe_case(cell, key, dtype=jnp.float64):
    k_p, k_x, k_v = jax.random.split(key, 3)
    params = jax.tree.map(lambda a: a.astype(dtype), cell.init(k_p, 3, 4))
    xs = jax.random.normal(k_x, (2, 6, 3), dtype)
    v = jax.random.normal(k_v, (4,), dtype)
    return params, xs, v


def _loss_from(cell, params, xs, v, t, carry):
    """L as a function of the carry entering step t, by a Python loop (independent of scan)."""
    y = None
    for s in range(t, xs.shape[1]):
        carry, y = cell.apply(params, carry, xs[:, s])
    return jnp.sum(y @ v)


@pytest.mark.parametrize("name", ["rnn", "lstm"])
def test_probe_gradients_equal_finite_differences(name):
    cell = rnnlab.cells.get(name)
    with jax.enable_x64(True):
        params, xs, v = _probe_case(cell, jax.random.key(2))
        grads = jax.tree.leaves(gradients.probe_gradients(cell, params, xs, v))
        loss_from = jax.jit(functools.partial(_loss_from, cell), static_argnums=(3,))
        carry = jax.tree.map(lambda c: c.astype(jnp.float64), cell.initial_carry(2, 4))
        eps = 1e-6
        for t in range(xs.shape[1]):
            leaves, treedef = jax.tree.flatten(carry)
            for li in range(len(leaves)):
                b, j = t % 2, (t + li) % 4

                def shifted(d, li=li, b=b, j=j, t=t, leaves=leaves, treedef=treedef):
                    moved = [a.at[b, j].add(d) if i == li else a for i, a in enumerate(leaves)]
                    return loss_from(params, xs, v, t, jax.tree.unflatten(treedef, moved))

                fd = (shifted(eps) - shifted(-eps)) / (2 * eps)
                np.testing.assert_allclose(grads[li][t, b, j], fd, rtol=1e-6, atol=1e-9)
            carry, _ = cell.apply(params, carry, xs[:, t])  # the carry entering step t + 1


def test_carousel_rate_is_log_forget_gate_with_inputs_off():
    # x = 0 keeps h = c = 0, so f = sigmoid(b_f) exactly; with h's gradient cut, dc_{t-1} =
    # f * dc_t: the cell-state path is multiplied by f alone, whatever W_h is.
    b_f = 1.0
    cell = rnnlab.cells.get("lstm", forget_bias=b_f)
    for rho in (0.5, 1.5):
        curves = gradients.lag_curves(
            cell, jax.random.key(3), **SIZES, input_std=0.0, transform_params=_scale(rho),
            stop_leaves=(0,),
        )  # fmt: skip
        fit = gradients.fit_rate(curves.lags, curves.log_norm[1])
        assert abs(fit.slope - gradients.carousel_rate_theory(b_f)) < 1e-10
        assert np.all(curves.zero_fraction[0] == 1.0)  # the cut leaf reads zero


def user_cell() -> Cell:
    """A user's cell with a dict carry and no w_h: h' = tanh(x U + h A), m' = 0.9 m + h'."""

    def init(key, input_size, hidden_size):
        k_u, k_a = jax.random.split(key)
        return {
            "u": jax.random.normal(k_u, (input_size, hidden_size)),
            "a": 0.5 * jax.random.normal(k_a, (hidden_size, hidden_size)) / hidden_size**0.5,
        }

    def initial_carry(batch_size, hidden_size):
        z = jnp.zeros((batch_size, hidden_size))
        return {"h": z, "m": z}

    def apply(params, carry, x):
        h = jnp.tanh(x @ params["u"] + carry["h"] @ params["a"])
        m = 0.9 * carry["m"] + h
        return {"h": h, "m": m}, m

    return Cell(init, initial_carry, apply, hidden_size=lambda p: p["a"].shape[0], name="user")


def test_user_cell_with_dict_carry_gets_every_leaf():
    curves = gradients.lag_curves(user_cell(), jax.random.key(4), **SIZES)
    assert curves.leaf_names == ["['h']", "['m']"]
    # m' = 0.9 m + h': the m path alone decays at log 0.9 per step; with h feeding in, no faster.
    fit = gradients.fit_rate(curves.lags, curves.log_norm[1])
    assert fit.slope >= math.log(0.9) - 1e-9
    assert all(np.all(np.isfinite(y)) for y in curves.log_norm)


def test_fit_rate_leaves_out_zeros_and_reports_residuals():
    lags = np.arange(1, 11)
    y = 0.3 * lags + 1.0
    y[4] = -np.inf
    fit = gradients.fit_rate(lags, y)
    assert fit.num_points == 9 and abs(fit.slope - 0.3) < 1e-12 and fit.max_residual < 1e-12


def test_rnn_rate_theory_kinds():
    w = 0.7 * np.eye(5)
    assert gradients.rnn_rate_theory("identity", "orthogonal", w)[:2] == ("equal", math.log(0.7))
    assert gradients.rnn_rate_theory("tanh", "orthogonal", w)[0] == "bound"
