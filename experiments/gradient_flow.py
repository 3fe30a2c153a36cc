"""Study 1: exploding and vanishing gradients (Bengio et al. 1994; Pascanu et al. 2013).

    python -m experiments.gradient_flow --workdir=DIR [--config=...gradient_flow.py:demo]

Parts (no training; training with and without clipping is a separate part of the study):
    1. ||dL/dh_t|| against lag at initialisation for each cell and spectral radius rho, read by
       zero probes in one float64 backward pass; the fitted per-step rate against theory
       (linear RNN, W = rho Q: exactly log(rho); tanh/ReLU: at most log sigma_max(W)).
    2. Pascanu's one-unit wall: the loss surface over (w, b), where the wall lies, and gradient
       descent across it with and without norm clipping.
    4. The LSTM's constant error carousel: dL/dc_t, and the cell-state path alone (the
       gradient through h stopped), whose per-step factor is f, not W_h.

Writes results.json, config.json, lag_curves.png, rates.png, wall.png, cec.png and report.md.
"""

from __future__ import annotations

import ast
import json
import math
import re
import time
from pathlib import Path

import jax
import numpy as np

import rnnlab
from experiments import _cli
from rnnlab.analysis import figures, gradients, pascanu_wall

_SPEC = re.compile(
    r"^\s*(?:(?P<label>[\w.-]+)\s*=\s*)?(?P<name>[\w.:]+)\s*(?:\((?P<args>.*)\))?\s*$"
)


def parse_cell_spec(spec: str) -> tuple[str, str, dict]:
    """'label=name(opt=value, ...)' -> (label, name, options); options are Python literals."""
    m = _SPEC.match(spec) if isinstance(spec, str) else None
    if m is None:
        raise ValueError(f"cell spec {spec!r}: expected 'label=name(option=value, ...)'")
    options = {}
    if m["args"] and m["args"].strip():
        try:
            call = ast.parse(f"f({m['args']})", mode="eval").body
            if call.args:
                raise ValueError("positional arguments")
            options = {kw.arg: ast.literal_eval(kw.value) for kw in call.keywords}
        except (SyntaxError, ValueError) as e:
            raise ValueError(f"cell spec {spec!r}: options must be name=literal ({e})") from None
    return m["label"] or m["name"], m["name"], options


def _build(name: str, options: dict):
    """(cell, scalable): the cell, and whether rho can reach it (it has params["w_h"])."""
    cell = rnnlab.cells.get(name, **options)
    shapes = jax.eval_shape(lambda k: cell.init(k, 1, 2), jax.random.key(0))
    return cell, isinstance(shapes, dict) and "w_h" in shapes


def _scale(radius: float | None):
    """W_h <- rho W_h. The built-in cells init W_h (each gate block) at spectral radius 1 (for
    rnn: ``spectral_radius``, default 1, for every init but "normal"), so this sets it to rho."""
    if radius is None:
        return None
    return lambda p: {**p, "w_h": p["w_h"] * radius}


def _finite(x):
    """JSON-safe floats: NaN and infinities become None."""
    if isinstance(x, dict):
        return {k: _finite(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_finite(v) for v in x]
    if isinstance(x, float | np.floating):
        return float(x) if math.isfinite(x) else None
    return x


def _lag_study(config, key) -> dict:
    """Part 1: lag curves, rate fits and theory for every cell x radius."""
    sizes = dict(
        input_size=config.input_size,
        hidden_size=config.hidden_size,
        batch_size=config.batch_size,
        seq_len=config.seq_len,
        num_seeds=config.num_seeds,
        input_std=config.input_std,
    )
    out = {}
    for index, spec in enumerate(config.cells):
        label, name, options = parse_cell_spec(spec)
        cell_key = jax.random.fold_in(key, index)
        entry = {"spec": spec, "name": name, "options": options, "radii": {}}
        cell, scalable = _build(name, options)  # one cell: one compilation for every radius
        for radius in config.radii if scalable else (None,):
            transform = _scale(radius)
            curves = gradients.lag_curves(cell, cell_key, **sizes, transform_params=transform)
            row = {"radius": radius, "leaves": {}}
            for leaf, y, z in zip(
                curves.leaf_names, curves.log_norm, curves.zero_fraction, strict=True
            ):
                fit = gradients.fit_rate(curves.lags, y, config.fit_min_lag)
                row["leaves"][leaf or "h"] = {
                    "fit": fit._asdict(),
                    "log_norm": np.round(y, 6).tolist(),
                    "max_zero_fraction": float(np.max(z)),
                }
            if name == "rnn":
                keys = gradients.seed_keys(cell_key, config.num_seeds)
                params = gradients.seed_params(
                    cell, keys, config.input_size, config.hidden_size, transform
                )
                act = options.get("activation_fn", "tanh")
                init = options.get("recurrent_init", "orthogonal")
                nominal = radius * options.get("spectral_radius", 1.0)
                row["theory"] = _check_rnn(config, act, init, params["w_h"], nominal, row)
            entry["radii"][str(radius) if scalable else "own init"] = row
        out[label] = entry
    return out


def _check_rnn(config, act, init, w_h, radius, row) -> dict:
    kind, rate, claim = gradients.rnn_rate_theory(act, init, w_h)
    slope = next(iter(row["leaves"].values()))["fit"]["slope"]
    if kind == "equal":
        error = abs(slope - math.log(radius))
        agrees = error <= config.linear_tolerance
        return dict(kind=kind, rate=math.log(radius), claim=claim, error=error, agrees=agrees)
    excess = slope - rate
    agrees = excess <= config.bound_tolerance
    return dict(kind=kind, rate=rate, claim=claim, excess=excess, agrees=bool(agrees))


def _cec_study(config, key, lag) -> dict:
    """Part 4: dL/dc_t in full and through the cell state only, per LSTM and radius."""
    labels = [parse_cell_spec(s)[0] for s in config.cells]
    out = {}
    for label in config.cec_cells:
        if label not in labels:
            raise ValueError(f"cec_cells: {label!r} is not a label in cells {labels}")
        index = labels.index(label)
        _, name, options = parse_cell_spec(config.cells[index])
        cell, scalable = _build(name, options)
        sizes = dict(
            input_size=config.input_size,
            hidden_size=config.hidden_size,
            batch_size=config.batch_size,
            seq_len=config.seq_len,
            num_seeds=config.num_seeds,
            input_std=config.input_std,
        )
        cell_key = jax.random.fold_in(key, index)  # the inits of part 1
        for radius in config.cec_radii if scalable else (None,):
            transform = _scale(radius)
            cut = gradients.lag_curves(
                cell, cell_key, **sizes, transform_params=transform,
                stop_leaves=(config.cec_hidden_leaf,),
            )  # fmt: skip
            carousel = cut.log_norm[config.cec_cell_leaf]
            # Inputs off: h = c = 0, f = sigmoid(b_f) exactly (same compilation: input_std is
            # traced), so the cell path's rate must be log sigmoid(b_f) to rounding.
            quiet = gradients.lag_curves(
                cell, cell_key, **{**sizes, "input_std": 0.0}, transform_params=transform,
                stop_leaves=(config.cec_hidden_leaf,),
            )  # fmt: skip
            quiet_fit = gradients.fit_rate(quiet.lags, quiet.log_norm[config.cec_cell_leaf])
            full = lag[label]["radii"].get(str(radius) if scalable else "own init")
            if full is None:  # a radius part 1 did not measure
                full = gradients.lag_curves(cell, cell_key, **sizes, transform_params=transform)
                full_c, full_h = (
                    full.log_norm[config.cec_cell_leaf],
                    full.log_norm[config.cec_hidden_leaf],
                )
            else:
                leaves = list(full["leaves"].values())
                full_c = np.asarray(leaves[config.cec_cell_leaf]["log_norm"], np.float64)
                full_h = np.asarray(leaves[config.cec_hidden_leaf]["log_norm"], np.float64)
            curves = cut
            fit = gradients.fit_rate(curves.lags, carousel, config.fit_min_lag)
            theory = None
            if name == "lstm" and options.get("chrono") is None:
                theory = gradients.carousel_rate_theory(options.get("forget_bias", 1.0))
            lags_at = [k for k in (10, 50, config.seq_len) if k <= config.seq_len]
            out[f"{label} rho={radius}"] = {
                "label": label,
                "radius": radius,
                "carousel_fit": fit._asdict(),
                "full_c_fit": gradients.fit_rate(curves.lags, full_c, config.fit_min_lag)._asdict(),
                "theory_rate_log_sigmoid_bf": theory,
                "carousel_inputs_off_fit": quiet_fit._asdict(),
                # log of (cell-path-only norm / full norm): 0 means the carousel carries it all.
                "carousel_minus_full": {k: float(carousel[k - 1] - full_c[k - 1]) for k in lags_at},
                "carousel": np.round(carousel, 6).tolist(),
                "full_c": full_c.tolist(),
                "full_h": full_h.tolist(),
            }
    return out


def _wall_study(wc) -> dict:
    """Part 2: the one-unit model's surface, its wall, and GD with and without clipping."""
    ws = np.linspace(*wc.w_range, wc.grid)
    bs = np.linspace(*wc.b_range, wc.grid)
    surface = pascanu_wall.surface(ws, bs)
    walls = []
    for w in wc.probe_ws:
        found = pascanu_wall.find_wall(w, wc.b_range[0], wc.b_range[1])
        b_theory, lam = pascanu_wall.wall_theory(w)
        walls.append(
            dict(
                found._asdict(),
                b_theory=float(b_theory),
                multiplier=float(lam),
                multiplier_pow_50=float(lam) ** pascanu_wall.STEPS,
            )
        )
    runs = {"no clipping": None, f"clip at {wc.clip_norm}": wc.clip_norm}
    trajectories = {
        label: [pascanu_wall.descend(s, learning_rate=wc.learning_rate, num_steps=wc.num_steps,
                                     clip_norm=clip) for s in wc.starts]
        for label, clip in runs.items()
    }  # fmt: skip
    summary = {
        label: [dict(start=list(s), end=t.points[-1].tolist(), final_loss=float(t.loss[-1]),
                     max_grad_norm=float(np.max(t.grad_norm)),
                     max_step=float(np.max(np.linalg.norm(np.diff(t.points, axis=0), axis=1))))
                for s, t in zip(wc.starts, trajs, strict=True)]
        for label, trajs in trajectories.items()
    }  # fmt: skip
    return dict(
        walls=walls,
        surface_median_grad_norm=float(np.median(surface.grad_norm)),
        surface_max_grad_norm=float(np.max(surface.grad_norm)),
        trajectories=summary,
        _objects=(surface, trajectories),
    )


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
    """Runs parts 1, 2 and 4 and writes results.json, config.json, the PNGs and report.md."""
    start = time.time()
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    for spec in config.cells:  # fail on a bad spec before any compilation
        rnnlab.cells.resolve_factory(parse_cell_spec(spec)[1])
    key = jax.random.key(config.seed)
    lag = _lag_study(config, key)
    t_lag = time.time() - start
    cec = _cec_study(config, key, lag)  # the same keys: the same inits as part 1
    wall = _wall_study(config.wall)
    wall_objects = wall.pop("_objects")
    claims = _claims(config, lag, cec, wall)
    pngs = _figures(workdir, config, lag, cec, wall_objects, wall["walls"])
    results = dict(
        lag_curves=lag, cec=cec, wall=wall, claims=claims, figures=pngs,
        runtime_s=dict(lag_curves=t_lag, total=time.time() - start),
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
    by_part = {p: [c for c in results["claims"] if c["part"] == p] for p in (1, 2, 4)}
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
        (4, ["### The LSTM's constant error carousel", "", f"![cec]({rel}/cec.png)", ""]),
    ]  # fmt: skip
    for part, head in sections:
        if part == 4 and "cec.png" not in results["figures"]:
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
    """The demo for experiments.reproduce: the ":demo" config (about 2 minutes on 2 cores).

    The study has no training state, so it reruns; a finished results.json is kept as is.
    """
    from experiments.configs import gradient_flow as configs

    if not (Path(workdir) / "results.json").exists():
        run(configs.get_config("demo"), workdir)


if __name__ == "__main__":
    _cli.main({"train": run})
