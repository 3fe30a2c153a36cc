"""experiments.gradient_flow end to end on its ":tiny" config, with a user's cell by path."""

import json
import textwrap

import pytest

from experiments import gradient_flow
from experiments.configs.gradient_flow import get_config

USER_CELL = '''
import jax, jax.numpy as jnp
from rnnlab.cells import Cell

def leaky(*, leak=0.9):
    """h' = leak * h + tanh(x U): a user's cell with no w_h (the radius cannot reach it)."""
    def init(key, input_size, hidden_size):
        return {"u": jax.random.normal(key, (input_size, hidden_size))}
    def initial_carry(batch_size, hidden_size):
        return jnp.zeros((batch_size, hidden_size))
    def apply(params, h, x):
        h = leak * h + jnp.tanh(x @ params["u"])
        return h, h
    return Cell(init, initial_carry, apply, hidden_size=lambda p: p["u"].shape[1], name="leaky")
'''


def test_parse_cell_spec():
    assert gradient_flow.parse_cell_spec("tanh=rnn(activation_fn='tanh', spectral_radius=1.5)") == (
        "tanh", "rnn", {"activation_fn": "tanh", "spectral_radius": 1.5})  # fmt: skip
    assert gradient_flow.parse_cell_spec("pkg.mod:cell") == ("pkg.mod:cell", "pkg.mod:cell", {})
    with pytest.raises(ValueError, match="name=literal"):
        gradient_flow.parse_cell_spec("x=rnn(activation_fn=tanh)")


def test_tiny_run_measures_the_papers_claims(tmp_path, monkeypatch):
    (tmp_path / "user_cells_gf.py").write_text(textwrap.dedent(USER_CELL))
    monkeypatch.syspath_prepend(str(tmp_path))
    config = get_config("tiny")
    config.cells = (
        "linear=rnn(activation_fn='identity')",
        "lstm_bf1=lstm(forget_bias=1.0)",
        "leaky=user_cells_gf:leaky(leak=0.9)",
    )
    workdir = tmp_path / "gradient_flow"
    results = gradient_flow.run(config, str(workdir))

    linear = results["lag_curves"]["linear"]["radii"]
    assert set(linear) == {"0.5", "1.5"}
    for row in linear.values():
        assert row["theory"]["kind"] == "equal" and row["theory"]["error"] < 1e-4
    assert list(results["lag_curves"]["leaky"]["radii"]) == ["own init"]  # measured once
    leaky = results["lag_curves"]["leaky"]["radii"]["own init"]["leaves"]["h"]["fit"]["slope"]
    assert leaky >= -0.11  # h' = 0.9 h + ...: no faster than log 0.9 = -0.105

    claims = {(c["part"], c["cell"], c["claim"][:30]): c["agrees"] for c in results["claims"]}
    assert claims[(1, "linear", "linear RNN, W = rho Q: ||dL/dh")] is True
    assert all(v is True for k, v in claims.items() if k[0] == 2)  # the wall and clipping
    wall = results["wall"]["walls"][0]
    assert abs(wall["b"] - wall["b_theory"]) < 1e-3 and wall["grad_norm"] > 1e3

    on_disk = json.loads((workdir / "results.json").read_text())
    assert on_disk["claims"] == json.loads(json.dumps(results["claims"]))
    assert json.loads((workdir / "config.json").read_text())["seq_len"] == 30
    for name in ("lag_curves.png", "rates.png", "wall.png", "cec.png"):
        assert (workdir / name).stat().st_size > 10_000
    # Part 3 on its tiny grid (smart init, no clipping and clipping, one seed, 20 steps).
    table = results["training"]["table"]
    assert [(r["init"], r["method"]) for r in table] == [("smart", "none"), ("smart", "clip")]
    assert claims[(3, "all clipped models", "norm clipping bounds every upd")] is True
    assert (workdir / "success_vs_length.png").stat().st_size > 10_000
    assert (workdir / "training" / "temporal_order_L10" / "checkpoints").is_dir()
    assert "gradient_flow/success_vs_length.png" in gradient_flow.report(workdir)
    text = gradient_flow.report(workdir)
    assert "gradient_flow/lag_curves.png" in text and "gradient_flow/wall.png" in text
    assert "**agrees**" in text
    assert text == (workdir / "report.md").read_text()


def test_unknown_cell_fails_before_compiling(tmp_path):
    config = get_config("tiny")
    config.cells = ("x=rnnn()",)
    with pytest.raises(ValueError, match="did you mean 'rnn'"):
        gradient_flow.run(config, str(tmp_path))
