"""Parts 1, 2 and 4 of experiments.gradient_flow: the measurements at initialisation.

The cell specs ('label=name(option=value, ...)'), the lag curves and their rate fits against
theory (part 1), Pascanu's one-unit wall (part 2) and the LSTM's constant error carousel (part 4).
"""

from __future__ import annotations

import ast
import math
import re

import jax
import numpy as np

import rnnlab
from rnnlab.analysis import gradients, pascanu_wall

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


def _sizes(config) -> dict:
    """The measurement sizes that parts 1 and 4 share."""
    keys = ("input_size", "hidden_size", "batch_size", "seq_len", "num_seeds", "input_std")
    return {k: config[k] for k in keys}


def _lag_study(config, key) -> dict:
    """Part 1: lag curves, rate fits and theory for every cell x radius."""
    sizes = _sizes(config)
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
        sizes = _sizes(config)
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
