"""LSTM with forget gate (Hochreiter & Schmidhuber 1997; Gers, Schmidhuber & Cummins 2000).

    z = x W_x + h W_h + b,  split into i, f, g, o         (gate order as PyTorch: i, f, g, o)
    i = sigmoid(z_i),  f = sigmoid(z_f),  g = tanh(z_g),  o = sigmoid(z_o)
    c' = f * c + i * g
    h' = o * tanh(c')

Options:
    forget_bias: added to b_f at init; 1.0 as Jozefowicz, Zaremba & Sutskever (2015) recommend.
    chrono: T_max for the chrono initialisation of Tallec & Ollivier (2018, eq. 16):
        b_f ~ log U[1, T_max - 1], b_i = -b_f (overrides forget_bias).
    peepholes: diagonal peephole weights (Gers & Schmidhuber 2000): z_i += p_i * c,
        z_f += p_f * c, z_o += p_o * c'.
    variant: one of the eight of Greff et al. (2017), "LSTM: A Search Space Odyssey":
        "vanilla"  the equations above
        "nig"      no input gate (i = 1)
        "nfg"      no forget gate (f = 1)
        "nog"      no output gate (o = 1)
        "niaf"     no input activation (g = z_g)
        "noaf"     no output activation (h' = o * c')
        "cifg"     coupled input and forget gate (i = 1 - f)
        "fgr"      full gate recurrence: the previous step's i, f, o feed every gate through
                   an extra [3H, 3H] matrix w_g (the carry then holds them)
    Greff's own "vanilla" has peepholes; here they are the separate ``peepholes`` option. Variants
    that drop a gate keep the fused [., 4H] layout, so params and converters look the same; the
    dropped gate's columns receive zero gradient.

Params: w_x [D, 4H], w_h [H, 4H], b [4H]; with peepholes p_i, p_f, p_o [H]; with fgr w_g [3H, 3H].
Carry: (h, c), or (h, c, a) with a = [i, f, o] of the previous step for "fgr".
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from rnnlab.cells import fused
from rnnlab.cells.base import Cell, check_sizes, lecun_normal, stacked_orthogonal, zeros_carry

VARIANTS = ("vanilla", "nig", "nfg", "nog", "niaf", "noaf", "cifg", "fgr")


def chrono_bias(key: jax.Array, hidden_size: int, max_time: float) -> jax.Array:
    """b_f ~ log U[1, T_max - 1] (Tallec & Ollivier 2018, eq. 16); b_i is its negative."""
    if max_time <= 2:
        raise ValueError(f"chrono={max_time!r}: expected T_max > 2 (the longest dependency)")
    return jnp.log(jax.random.uniform(key, (hidden_size,), minval=1.0, maxval=max_time - 1.0))


def lstm(
    *,
    forget_bias: float = 1.0,
    chrono: float | None = None,
    peepholes: bool = False,
    variant: str = "vanilla",
) -> Cell:
    """Returns the LSTM cell; see the module docstring for the equations and options."""
    if variant not in VARIANTS:
        raise ValueError(f"variant={variant!r}: expected one of {list(VARIANTS)}")
    if chrono is not None and not chrono > 2:
        raise ValueError(f"chrono={chrono!r}: expected T_max > 2 (the longest dependency)")
    fgr = variant == "fgr"

    def init(key, input_size, hidden_size):
        check_sizes(input_size, hidden_size)
        k_x, k_h, k_c, k_g = jax.random.split(key, 4)
        H = hidden_size
        b = jnp.zeros(4 * H)
        if chrono is not None:
            b_f = chrono_bias(k_c, H, chrono)
            b = b.at[H : 2 * H].set(b_f).at[:H].set(-b_f)
        else:
            b = b.at[H : 2 * H].set(forget_bias)
        params = {
            "w_x": lecun_normal(k_x, (input_size, 4 * H)),
            "w_h": stacked_orthogonal(k_h, H, 4),
            "b": b,
        }
        if peepholes:
            params.update(p_i=jnp.zeros(H), p_f=jnp.zeros(H), p_o=jnp.zeros(H))
        if fgr:
            params["w_g"] = lecun_normal(k_g, (3 * H, 3 * H))
        return params

    def initial_carry(batch_size, hidden_size):
        h = zeros_carry(batch_size, hidden_size)
        if fgr:
            return h, h, jnp.zeros((batch_size, 3 * hidden_size))
        return h, h

    def project(params, xs):
        # No time dependence: one [B*T, D] x [D, 4H] GEMM instead of T small ones.
        return fused.dense(xs, params["w_x"], params["b"])  # [..., 4H]

    def step(params, carry, z):
        h, c = carry[0], carry[1]
        z = z + h @ params["w_h"]  # [B, 4H]
        z_i, z_f, z_g, z_o = jnp.split(z, 4, axis=-1)
        if fgr:
            r_i, r_f, r_o = jnp.split(carry[2] @ params["w_g"], 3, axis=-1)
            z_i, z_f, z_o = z_i + r_i, z_f + r_f, z_o + r_o
        if peepholes:
            z_i = z_i + params["p_i"] * c
            z_f = z_f + params["p_f"] * c
        f = jnp.ones_like(c) if variant == "nfg" else jax.nn.sigmoid(z_f)
        if variant == "cifg":
            i = 1.0 - f
        elif variant == "nig":
            i = jnp.ones_like(c)
        else:
            i = jax.nn.sigmoid(z_i)
        g = z_g if variant == "niaf" else jnp.tanh(z_g)
        c = f * c + i * g
        if peepholes:
            z_o = z_o + params["p_o"] * c
        o = jnp.ones_like(c) if variant == "nog" else jax.nn.sigmoid(z_o)
        h = o * (c if variant == "noaf" else jnp.tanh(c))
        if fgr:
            return (h, c, jnp.concatenate([i, f, o], axis=-1)), h
        return (h, c), h

    def apply(params, carry, x):
        # The plain projection (not fused.dense), so forward-mode autodiff works on one step.
        return step(params, carry, x @ params["w_x"] + params["b"])

    return Cell(
        init,
        initial_carry,
        apply,
        project=project,
        step=step,
        scan=fused.lstm_scan if variant == "vanilla" and not peepholes else None,
        hidden_size=lambda params: params["w_h"].shape[0],
        name="lstm",
    )
