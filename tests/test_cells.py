"""Cells: gradients against finite differences, the registry, initialisations, bad input."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import rnnlab
from rnnlab import cells
from rnnlab.cells.lstm import VARIANTS, chrono_bias
from tests.conftest import fd_check, to64

CELL_OPTIONS = (
    [("rnn", dict(activation_fn=a)) for a in ("tanh", "relu", "identity")]
    + [("rnn", dict(recurrent_init=i, spectral_radius=0.9)) for i in ("gaussian", "sparse")]
    + [("rnn", dict(recurrent_init="identity")), ("rnn", dict(recurrent_init="normal"))]
    + [("lstm", dict(variant=v)) for v in VARIANTS]
    + [("lstm", dict(peepholes=True)), ("lstm", dict(chrono=50.0)), ("lstm", dict(forget_bias=0))]
    + [("lstm", dict(peepholes=True, variant="cifg"))]
    + [("gru", dict(reset_after=False)), ("gru", dict(reset_after=True))]
)
IDS = [f"{n}-{'-'.join(f'{k}={v}' for k, v in o.items())}" for n, o in CELL_OPTIONS]


def _perturbed_params(cell, key, input_size, hidden_size):
    """Init params plus noise, so zero-initialised terms (peepholes, b_hn) are exercised."""
    params = cell.init(key, input_size, hidden_size)
    leaves, tree = jax.tree.flatten(params)
    keys = jax.random.split(jax.random.fold_in(key, 1), len(leaves))
    leaves = [a + 0.1 * jax.random.normal(k, a.shape) for a, k in zip(leaves, keys)]
    return jax.tree.unflatten(tree, leaves)


@pytest.mark.parametrize("name,options", CELL_OPTIONS, ids=IDS)
def test_gradients_match_finite_differences(x64, name, options):
    cell = cells.get(name, **options)
    B, T, D, H = 3, 5, 4, 6
    key = jax.random.key(0)
    params = to64(_perturbed_params(cell, key, D, H))
    xs = jax.random.normal(jax.random.key(1), (B, T, D), jnp.float64)
    carry = to64(jax.tree.map(lambda c: 0.3 * jnp.ones_like(c), cell.initial_carry(B, H)))
    lengths = jnp.array([5, 3, 1])
    readout = jax.random.normal(jax.random.key(2), (B, T, H), jnp.float64)

    def loss(params, xs, carry):
        final, ys = rnnlab.unroll(cell, params, xs, carry=carry, lengths=lengths)
        return jnp.sum(ys * readout) + sum(jnp.sum(c**2) for c in jax.tree.leaves(final))

    fd_check(loss, (params, xs, carry), rtol=1e-5)


@pytest.mark.parametrize("name,options", CELL_OPTIONS, ids=IDS)
def test_apply_equals_step_after_project(name, options):
    cell = cells.get(name, **options)
    params = _perturbed_params(cell, jax.random.key(0), 4, 6)
    x = jax.random.normal(jax.random.key(1), (3, 4))
    carry = jax.tree.map(lambda c: c + 0.5, cell.initial_carry(3, 6))
    a = cell.apply(params, carry, x)
    b = cell.step(params, carry, cell.project(params, x))
    jax.tree.map(np.testing.assert_array_equal, a, b)


def test_forget_bias_sets_initial_forget_gate():
    for b in (-1.0, 0.0, 1.0, 2.0, 5.0):
        cell = cells.get("lstm", forget_bias=b, variant="vanilla")
        params = cell.init(jax.random.key(0), 3, 8)
        z = cell.project(params, jnp.zeros((1, 3)))  # zero input, zero state
        f = jax.nn.sigmoid(jnp.split(z, 4, axis=-1)[1])
        np.testing.assert_allclose(f, jax.nn.sigmoid(b) * np.ones((1, 8)), rtol=1e-6)


def test_chrono_biases_follow_tallec_ollivier():
    T_max, H = 100.0, 6
    params = cells.get("lstm", chrono=T_max).init(jax.random.key(0), 2, H)
    b_i, b_f = np.asarray(params["b"][:H]), np.asarray(params["b"][H : 2 * H])
    np.testing.assert_array_equal(b_i, -b_f)
    # The distribution, from many draws of the same function the init calls.
    u = np.exp(np.asarray(chrono_bias(jax.random.key(1), 20000, T_max)))  # U[1, T_max - 1]
    assert u.min() >= 1.0 and u.max() <= T_max - 1
    hist, _ = np.histogram(u, bins=10, range=(1.0, T_max - 1))
    expected = u.size / 10
    assert np.all(np.abs(hist - expected) < 5 * np.sqrt(expected)), hist


@pytest.mark.parametrize("radius", [0.5, 0.95, 1.1])
@pytest.mark.parametrize("kind", ["orthogonal", "gaussian", "sparse", "identity"])
def test_recurrent_init_has_requested_spectral_radius(kind, radius):
    w = cells.get("rnn", recurrent_init=kind, spectral_radius=radius).init(
        jax.random.key(3), 2, 40
    )["w_h"]
    assert np.max(np.abs(np.linalg.eigvals(np.asarray(w, np.float64)))) == pytest.approx(
        radius, rel=1e-4
    )


def test_orthogonal_init_scales_every_singular_value():
    w = cells.get("rnn", spectral_radius=0.9).init(jax.random.key(0), 2, 16)["w_h"]
    np.testing.assert_allclose(np.linalg.svd(np.asarray(w), compute_uv=False), 0.9, rtol=1e-5)


def test_sparse_init_keeps_nonzero_incoming_weights_per_unit():
    w = cells.get("rnn", recurrent_init="sparse", nonzero=15).init(jax.random.key(0), 2, 50)
    assert np.all(np.count_nonzero(np.asarray(w["w_h"]), axis=0) == 15)


def test_init_is_vmappable_over_keys():
    cell = cells.get("rnn", recurrent_init="gaussian", spectral_radius=0.9)
    stacked = jax.vmap(lambda k: cell.init(k, 3, 8))(jax.random.split(jax.random.key(0), 4))
    assert stacked["w_h"].shape == (4, 8, 8)
    assert not np.allclose(stacked["w_h"][0], stacked["w_h"][1])


@pytest.mark.parametrize("name", ["lstm", "gru"])
def test_vmapped_orthogonal_init_runs_one_qr_at_a_time_and_equals_the_loop(name):
    """A batched QR can deadlock jaxlib's CPU thread pool (cells.base.orthogonal): none here."""
    cell = cells.get(name)
    keys = jax.random.split(jax.random.key(0), 5)
    init = jax.vmap(lambda k: cell.init(k, 3, 8))
    qrs = [ln for ln in str(jax.make_jaxpr(init)(keys)).splitlines() if "= qr[" in ln]
    assert qrs and all("f32[5," not in ln for ln in qrs), qrs  # unbatched [8, 8] QRs only
    stacked = jax.jit(init)(keys)
    for i, k in enumerate(keys):
        np.testing.assert_array_equal(stacked["w_h"][i], cell.init(k, 3, 8)["w_h"])


def test_unknown_cell_lists_the_known_ones():
    with pytest.raises(ValueError, match=r"unknown cell 'lstn' \(did you mean 'lstm'\?\).*gru"):
        cells.get("lstn")


def test_unknown_option_names_the_option():
    with pytest.raises(ValueError, match=r"unknown option\(s\) \['forget_bais'\]"):
        cells.get("lstm", forget_bais=1.0)


@pytest.mark.parametrize(
    "name,options,message",
    [
        ("lstm", dict(variant="xyz"), "variant='xyz'"),
        ("lstm", dict(chrono=1.0), "chrono=1.0"),
        ("rnn", dict(activation_fn="gelu"), "activation_fn='gelu'"),
        ("rnn", dict(recurrent_init="he"), "recurrent_init='he'"),
    ],
)
def test_bad_options_name_the_argument(name, options, message):
    with pytest.raises(ValueError, match=message):
        cells.get(name, **options)


def test_bad_sizes_name_the_argument():
    with pytest.raises(ValueError, match="hidden_size must be a positive int"):
        cells.get("gru").init(jax.random.key(0), 3, 0)


def test_dotted_path_that_does_not_import():
    with pytest.raises(ValueError, match="cannot import module 'no_such_pkg.cells'"):
        cells.get("no_such_pkg.cells:mine")
    with pytest.raises(ValueError, match="has no 'nope'"):
        cells.get("tests._user_cell:nope")


def test_register_and_get_a_user_cell():
    from tests._user_cell import mgu

    cells.register("mgu_test", mgu)
    try:
        assert cells.get("mgu_test", scale=0.5).name == "mgu"
        assert "mgu_test" in cells.names()
    finally:
        cells._REGISTRY.pop("mgu_test")
