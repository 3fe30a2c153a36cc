"""Study 1: exploding and vanishing gradients (Bengio et al. 1994; Pascanu et al. 2013).

    python -m experiments.gradient_flow --workdir=DIR [--config=...gradient_flow.py:demo]

Parts:
    1. ||dL/dh_t|| against lag at initialisation for each cell and spectral radius rho, read by
       zero probes in one float64 backward pass; the fitted per-step rate against theory
       (linear RNN, W = rho Q: exactly log(rho); tanh/ReLU: at most log sigma_max(W)).
    2. Pascanu's one-unit wall: the loss surface over (w, b), where the wall lies, and gradient
       descent across it with and without norm clipping.
    3. Training with and without clipping (Pascanu 2013, sec. 5, fig. 7), when
       ``training.enabled``: temporal order and adding at each L, inits {sigmoid, basic, smart}
       x {no clipping, clipping, clipping + Omega} x seeds, all models of a task and L in one
       compiled program (rnnlab.analysis.pascanu_training, trained through rnnlab.train.loop,
       so a killed study resumes from training/<task>_L<L>/checkpoints); success = test error
       under 1% on fresh sequences; gradient-norm spikes recorded as they happen.
    4. The LSTM's constant error carousel: dL/dc_t, and the cell-state path alone (the
       gradient through h stopped), whose per-step factor is f, not W_h.

Writes results.json, config.json, lag_curves.png, rates.png, wall.png, cec.png, with part 3
success_vs_length.png and grad_norms.png (and training/), and report.md.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import jax
import numpy as np

import rnnlab
from experiments import _cli
from experiments._gradient_flow_studies import (
    _cec_study,
    _lag_study,
    _wall_study,
    parse_cell_spec,
)
from experiments._gradient_flow_training import (
    _training_claims,
    _training_figures,
    _training_section,
    _training_specs,
    _training_study,
)
from rnnlab.analysis import figures, pascanu_wall


def _finite(x):
    """JSON-safe floats: NaN and infinities become None."""
    if isinstance(x, dict):
        return {k: _finite(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_finite(v) for v in x]
    if isinstance(x, float | np.floating):
        return float(x) if math.isfinite(x) else None
    return x


def _claims(config, lag, cec, wall) -> list[dict]:
    """Each claim of the papers checked here: claim, measurement, agrees (True/False/None)."""
    out = []
    for label, entry in lag.items():
        rows = [r for r in entry["radii"].values() if "theory" in r]
        if not rows:
            continue
        slopes = ", ".join(
            f"rho={r['radius']}: {next(iter(r['leaves'].values()))['fit']['slope']:+.6f} "
            f"(theory {r['theory']['rate']:+.6f})" for r in rows
        )  # fmt: skip
        if rows[0]["theory"]["kind"] == "equal":
            worst = max(r["theory"]["error"] for r in rows)
            measured = f"rates {slopes}; max |error| {worst:.1e}"
        else:
            worst = max(r["theory"]["excess"] for r in rows)
            measured = f"rates {slopes}; max (rate - bound) {worst:+.3f}"
        out.append(
            dict(
                part=1,
                cell=label,
                claim=rows[0]["theory"]["claim"],
                measured=measured,
                agrees=all(r["theory"]["agrees"] for r in rows),
            )
        )
    for key, c in cec.items():
        theory = c["theory_rate_log_sigmoid_bf"]
        rate = c["carousel_fit"]["slope"]
        gap = ", ".join(f"lag {k}: {v:+.2f}" for k, v in c["carousel_minus_full"].items())
        quiet = c["carousel_inputs_off_fit"]["slope"]
        if theory is not None:
            error = max(abs(rate - theory), abs(quiet - theory))
            out.append(dict(
                part=4, cell=key, agrees=bool(abs(quiet - theory) < 1e-9
                                             and abs(rate - theory) <= config.cec_tolerance),
                claim="the cell-state path is multiplied by f only, so its per-step rate is "
                      f"log f ~ log sigmoid(b_f) = {theory:+.4f} (exactly with inputs off; "
                      f"within {config.cec_tolerance} nats with inputs on)",
                measured=f"cell-path-only rate {rate:+.4f}/step with inputs, {quiet:+.6f} with "
                         f"inputs off; max |error| {error:.1e}",
            ))  # fmt: skip
        last = c["carousel_minus_full"][max(c["carousel_minus_full"])]
        out.append(dict(
            part=4, cell=key, agrees=bool(last >= math.log(0.5)),
            claim="the long-lag gradient to c_t flows through the carousel (the cell path "
                  "alone carries at least half of ||dL/dc_t|| at the longest lag)",
            measured=f"log(||cell path only|| / ||dL/dc_t||): {gap}",
        ))  # fmt: skip
    walls = wall["walls"]
    off = max(abs(x["b"] - x["b_theory"]) for x in walls)
    big = min(x["grad_norm"] for x in walls) / max(wall["surface_median_grad_norm"], 1e-300)
    out.append(dict(
        part=2, cell="one unit",
        claim="E has a wall (a jump) where x_0 = 0.5 is the unstable fixed point, "
              "b = 0.5 - w sigma(0.5), and ||grad E|| explodes there",
        measured="walls at " + ", ".join(f"(w={x['w']}, b={x['b']:.6f}, ||grad||="
                                         f"{x['grad_norm']:.2e})" for x in walls)
        + f"; max |b - theory| {off:.1e}; weakest wall gradient / surface median {big:.1e}",
        agrees=bool(off < 1e-3 and big > 1e3),
    ))  # fmt: skip
    trajs = wall["trajectories"]
    (free_label, free), (clip_label, clipped) = list(trajs.items())
    out.append(dict(
        part=2, cell="one unit",
        claim="without clipping a step at the wall throws the iterate far away; clipping bounds "
              "the step (lr * threshold) and keeps descending",
        measured=f"largest step {free_label}: {max(t['max_step'] for t in free):.2f}, "
                 f"{clip_label}: {max(t['max_step'] for t in clipped):.2f}; final E "
                 f"{[round(t['final_loss'], 4) for t in free]} vs "
                 f"{[round(t['final_loss'], 4) for t in clipped]}",
        agrees=bool(max(t["max_step"] for t in clipped) <= config.wall.learning_rate
                    * config.wall.clip_norm * (1 + 1e-9)
                    and np.mean([t["final_loss"] for t in clipped])
                    <= np.mean([t["final_loss"] for t in free])),
    ))  # fmt: skip
    return out


def _figures(workdir: Path, config, lag, cec, wall_objects, walls) -> list[str]:
    lags = np.arange(1, config.seq_len + 1)
    curves, theory, rows = {}, {}, []
    for label, entry in lag.items():
        curves[label], theory[label] = {}, {}
        for rkey, r in entry["radii"].items():
            leaf = next(iter(r["leaves"].values()))
            curves[label][rkey] = np.asarray(leaf["log_norm"], np.float64)
            if "theory" in r:
                theory[label][rkey] = (r["theory"]["kind"], r["theory"]["rate"])
            rows.append(dict(cell=label, radius=r["radius"], slope=leaf["fit"]["slope"]))
    figures.lag_curves(workdir / "lag_curves.png", lags, curves, theory)
    figures.rates(workdir / "rates.png", rows)
    surface, trajectories = wall_objects
    b_line, multiplier = pascanu_wall.wall_theory(surface.ws)
    unstable = multiplier > 1.0  # w sigma'(x_0) > 1: x_0 can be the unstable fixed point
    figures.wall(workdir / "wall.png", surface, [(x["w"], x["b"]) for x in walls], trajectories,
                 (surface.ws[unstable], b_line[unstable]))  # fmt: skip
    panels, reference = {}, {}
    contrast = lag.get(config.contrast_cell, {}).get("radii", {})
    for key, c in cec.items():
        panel = {"dL/dc_t": np.asarray(c["full_c"]), "dL/dc_t, cell path only":
                 np.asarray(c["carousel"]), "dL/dh_t": np.asarray(c["full_h"])}  # fmt: skip
        if str(c["radius"]) in contrast:
            leaf = next(iter(contrast[str(c["radius"])]["leaves"].values()))
            panel[f"{config.contrast_cell} RNN dL/dh_t"] = np.asarray(leaf["log_norm"], float)
        panels[key] = panel
        if c["theory_rate_log_sigmoid_bf"] is not None:
            reference[key] = ("slope log sigmoid(b_f)", c["theory_rate_log_sigmoid_bf"])
    names = ["lag_curves.png", "rates.png", "wall.png"]
    if panels:
        figures.cec(workdir / "cec.png", lags, panels, reference)
        names.append("cec.png")
    return names


def run(config, workdir) -> dict:
    """Runs parts 1, 2, 4 (and 3 if ``training.enabled``); writes results.json, config.json,
    the PNGs and report.md. Part 3 resumes from workdir/training/ when it holds checkpoints."""
    start = time.time()
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    for spec in config.cells:  # fail on a bad spec before any compilation
        rnnlab.cells.resolve_factory(parse_cell_spec(spec)[1])
    specs = _training_specs(config.training) if config.training.enabled else []
    key = jax.random.key(config.seed)
    lag = _lag_study(config, key)
    t_lag = time.time() - start
    cec = _cec_study(config, key, lag)  # the same keys: the same inits as part 1
    wall = _wall_study(config.wall)
    wall_objects = wall.pop("_objects")
    claims = _claims(config, lag, cec, wall)
    pngs = _figures(workdir, config, lag, cec, wall_objects, wall["walls"])
    t_training = time.time()
    training = _training_study(config, specs, workdir) if specs else None
    if training is not None:
        claims += _training_claims(config.training, training["table"])
        pngs += _training_figures(workdir, training)
    results = dict(
        lag_curves=lag, cec=cec, wall=wall, training=training, claims=claims, figures=pngs,
        runtime_s=dict(lag_curves=t_lag, training=time.time() - t_training if specs else 0.0,
                       total=time.time() - start),
        versions=dict(jax=jax.__version__, rnnlab=rnnlab.__version__),
    )  # fmt: skip
    (workdir / "results.json").write_text(json.dumps(_finite(results), indent=1))
    (workdir / "config.json").write_text(config.to_json(indent=1))
    (workdir / "report.md").write_text(report(workdir))
    return results


def report(workdir) -> str:
    """The report section: next to each figure, the claim it checks and whether it agrees."""
    workdir = Path(workdir)
    results = json.loads((workdir / "results.json").read_text())
    rel = workdir.name
    verdict = {True: "**agrees**", False: "**does not agree**", None: "no closed-form theory"}
    by_part = {p: [c for c in results["claims"] if c["part"] == p] for p in (1, 2, 3, 4)}
    lines = [
        "## Study 1: exploding and vanishing gradients (Pascanu, Mikolov & Bengio 2013)",
        "",
        f"Runtime {results['runtime_s']['total']:.0f} s. Every number below is measured by "
        "`experiments.gradient_flow`; nothing is tuned to agree.",
        "",
        "### Gradient norm against lag at initialisation (Pascanu 2013, sec. 2.1)",
        "",
        f"![lag curves]({rel}/lag_curves.png)",
        f"![rates]({rel}/rates.png)",
        "",
    ]
    sections = [
        (1, []),
        (2, ["### The exploding-gradient wall (Pascanu 2013, sec. 2.3, fig. 6)", "",
             f"![wall]({rel}/wall.png)", ""]),
        (3, _training_section(results.get("training"), rel)),
        (4, ["### The LSTM's constant error carousel", "", f"![cec]({rel}/cec.png)", ""]),
    ]  # fmt: skip
    for part, head in sections:
        if (part == 4 and "cec.png" not in results["figures"]) or not head:
            continue
        lines += head
        for c in by_part[part]:
            lines.append(f"- *{c['cell']}*: claim: {c['claim']}. Measured: {c['measured']}. "
                         f"Verdict: {verdict[c['agrees']]}.")  # fmt: skip
        lines.append("")
    others = [label for label, e in results["lag_curves"].items()
              if not any("theory" in r for r in e["radii"].values())]  # fmt: skip
    if others:
        rates = "; ".join(
            f"{label}: " + ", ".join(
                f"{rk}: {next(iter(r['leaves'].values()))['fit']['slope']:+.3f}"
                for rk, r in results["lag_curves"][label]["radii"].items())
            for label in others
        )  # fmt: skip
        lines += [f"Cells without a closed-form rate (measured only, nats/step): {rates}.", ""]
    return "\n".join(lines)


def demo(workdir: str) -> None:
    """The demo for experiments.reproduce: the ":demo" config (parts 1, 2, 4 about 2 minutes
    on 2 cores; part 3, temporal order at L = 20, about 1.5 minutes more).

    A finished results.json is kept as is; otherwise parts 1, 2 and 4 rerun (no state) and
    part 3 resumes its grid from workdir/training/ checkpoints.
    """
    from experiments.configs import gradient_flow as configs

    if not (Path(workdir) / "results.json").exists():
        run(configs.get_config("demo"), workdir)


if __name__ == "__main__":
    _cli.main({"train": run}, cpu_devices=_cli.cores())
