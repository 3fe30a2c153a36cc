"""Study 2: the forget-gate bias and LSTM variants, measured over paired seeds.

    python -m experiments.forget_bias --workdir=DIR [--config=...forget_bias.py:demo]

"What happens if f = 1 always? How should b_f be initialised?" LSTMs with b_f in
``forget_biases`` and chrono (Tallec & Ollivier 2018, eq. 16: b_f ~ log U[1, T_max - 1],
b_i = -b_f), a GRU and a tanh RNN, and optionally the variants of Greff et al. (2017), train on
each task of ``tasks``, ``num_seeds`` paired seeds each.

One compiled program per task: models are grouped by param structure (all LSTM biases x seeds;
GRU x seeds; RNN x seeds; one group per variant), each group maps its step over its model axis
(``rnnlab.train.sweep``, by default strategy "auto") and the program steps the tuple of groups.
The combined state is one TrainState whose step, key, data position and health carry the model
axis [N] of all groups concatenated and whose params and optimizer state are tuples over the
groups, so ``rnnlab.train.loop`` checkpoints, resumes and logs per model as for one sweep. One
program per task rather than per family: one compile, one checkpoint and one metrics log per
task, and a killed study resumes all families at the same step. On 2 CPU cores "map" was
faster than "vmap" (370 ms against 654 ms per step for the default's 40 models at T=100, H=32,
batch 32; shared cores, load ~5), and "sharded" over one CPU device per core faster still: the
launcher asks for those devices and "auto" picks it; "vmap" is for accelerators.

Pairing: seed k fixes the init key, the data stream and the eval sequences of every setting, so
the LSTMs of seed k differ only in b_i and b_f, and the variants share their w_x and w_h.

Writes DIR/<task>_T<T>/ (config.json, metrics.jsonl per model, checkpoints/), DIR/results.json,
curves.png, steps_to_solve.png and report.md. See experiments/configs/forget_bias.py.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging

from experiments import _cli
from rnnlab import cells
from rnnlab.analysis import stats
from rnnlab.cells.lstm import VARIANTS, chrono_bias
from rnnlab.data import tasks
from rnnlab.models import sequence
from rnnlab.train import loop, state, step, sweep, writers

# Fields that change neither a model nor its data: they may differ when resuming.
RESUMABLE = ("steps", "log_every", "checkpoint_every", "max_to_keep", "tasks", "solved_at")
RESUMABLE += ("reference", "alpha")
GREFF = tuple(v for v in VARIANTS if v != "vanilla") + ("peepholes",)
PAPER_THRESHOLD = 0.01  # MSE (adding), error (copy, temporal order)
METRIC = {"adding": "loss", "copy": "error", "temporal_order": "error"}  # the curve to judge
CHANCE_ERROR = {"copy": 7 / 8, "temporal_order": 3 / 4}  # memoryless error, for "error" curves


class Group(NamedTuple):
    """Models sharing one param structure; every leaf of their state has a model axis [n].

    Attributes:
        name: "lstm" (the bias grid), a baseline cell's name, or "lstm_<variant>".
        labels, seeds: per model, e.g. ("lstm bf=0", "lstm bf=0", ...) and (0, 1, ...).
        hparams: {"seed", "forget_bias", "chrono"} arrays [n].
        init_one: h -> TrainState of one model.
        step_one: (state, h) -> (state, metrics) of one model.
        eval_one: (state, h) -> eval metrics of one model on fresh, per-seed paired sequences.
    """

    name: str
    labels: tuple
    seeds: tuple
    hparams: dict
    init_one: Callable
    step_one: Callable
    eval_one: Callable


def parse_pairs(text: str, field: str, cast=str) -> list[tuple[str, str]]:
    """'adding:100, copy:50' -> [("adding", cast("100")), ...] (":" or "=" separated)."""
    out = []
    for item in (s.strip() for s in text.split(",")):
        if not item:
            continue
        name, sep, value = item.replace("=", ":").partition(":")
        try:
            out.append((name.strip(), cast(value.strip())))
        except ValueError:
            sep = ""
        _cli.check(bool(sep), field, text, f"{item!r}: expected 'name:value'")
    return out


def _names(text: str) -> list[str]:
    return [s.strip() for s in text.split(",") if s.strip()]


class Run(NamedTuple):
    """One task of the study: the task with the headline threshold, the paper's, and T."""

    task: tasks.Task
    threshold: float
    paper: tasks.Task
    seq_len: int


def setup(config) -> list[Run]:
    """Checks every value before anything is compiled; returns the runs, one per task.

    Raises:
        experiments._cli.UsageError: naming the field and the reason.
    """
    c = config
    _cli.check_ints(
        c, ("num_seeds", "hidden_size", "num_layers", "batch_size", "steps", "log_every"), 1
    )
    _cli.check_ints(c, ("eval_batch_size", "checkpoint_every", "max_to_keep"), 1)
    _cli.check_choices(
        c,
        (
            ("optimizer", step.OPTIMIZERS),
            ("strategy", sweep.STRATEGIES),
            ("on_nonfinite", loop.ON_NONFINITE),
        ),
    )
    _cli.check(c.learning_rate > 0, "learning_rate", c.learning_rate, "must be positive")
    _cli.check(0 < c.alpha < 1, "alpha", c.alpha, "must be in (0, 1)")
    _cli.check(
        c.chrono_max_time == 0 or c.chrono_max_time > 2,
        "chrono_max_time",
        c.chrono_max_time,
        "0 (each task's T) or > 2",
    )
    for name in _names(c.baselines):
        _cli.check(
            name in cells.names(),
            "baselines",
            c.baselines,
            f"unknown cell {name!r}{_cli.suggest(name, cells.names())}",
        )
    for name in variant_names(c.variants):
        _cli.check(
            name in GREFF,
            "variants",
            c.variants,
            f"unknown variant {name!r}{_cli.suggest(name, GREFF)}; known: {GREFF}",
        )
    _cli.check(c.reference in labels(c), "reference", c.reference, f"not among {labels(c)}")
    thresholds = dict(parse_pairs(c.solved_at, "solved_at", float))
    runs = []
    for name, seq_len in parse_pairs(c.tasks, "tasks", int):
        _cli.check(
            name in tasks.names(),
            "tasks",
            c.tasks,
            f"unknown task {name!r}{_cli.suggest(name, tasks.names())}",
        )
        try:
            tasks.get(name).check_seq_len(seq_len)
        except ValueError as e:
            raise _cli.UsageError(f"--config.tasks={c.tasks!r}: {e}") from None
        threshold = thresholds.get(name, PAPER_THRESHOLD)
        task = tasks.get(name, threshold=threshold)
        runs.append(Run(task, threshold, tasks.get(name, threshold=PAPER_THRESHOLD), seq_len))
    _cli.check(bool(runs), "tasks", c.tasks, "no task given")
    return runs


def variant_names(text: str) -> list[str]:
    return list(GREFF) if text.strip() == "all" else _names(text)


def labels(config) -> list[str]:
    """The settings in order: LSTM biases, chrono, baselines, variants."""
    out = [f"lstm bf={b:g}" for b in config.forget_biases]
    out += ["lstm chrono"] * bool(config.chrono) + _names(config.baselines)
    return out + [f"lstm {v}" for v in variant_names(config.variants)]


def groups(config, task: tasks.Task, seq_len: int) -> list[Group]:
    """The model grid for one task, grouped by param structure (see the module docstring)."""
    seeds = list(range(config.seed, config.seed + config.num_seeds))
    t_max = config.chrono_max_time or seq_len
    bias_grid = [(f"lstm bf={b:g}", float(b), False) for b in config.forget_biases]
    bias_grid += [("lstm chrono", 0.0, True)] * bool(config.chrono)
    specs = [("lstm", cells.get("lstm", forget_bias=0.0), bias_grid)] * bool(bias_grid)
    for name in _names(config.baselines):
        specs.append((name, cells.get(name), [(name, 0.0, False)]))
    for v in variant_names(config.variants):
        options = {"peepholes": True} if v == "peepholes" else {"variant": v}
        cell = cells.get("lstm", forget_bias=config.variant_forget_bias, **options)
        specs.append((f"lstm_{v}", cell, [(f"lstm {v}", config.variant_forget_bias, False)]))
    return [_group(config, task, seq_len, t_max, seeds, *spec) for spec in specs]


def _group(config, task, seq_len, t_max, seeds, name, cell, settings) -> Group:
    model = sequence.make(
        cell,
        input_size=task.input_size,
        hidden_size=config.hidden_size,
        output_size=task.output_size,
        num_layers=config.num_layers,
        readout=task.readout,
    )
    tx = step.optimizer(config.optimizer, config.learning_rate)
    source = tasks.source(task, None, config.batch_size, seq_len)

    def keys(h):  # paired seeds: every setting of seed k draws the same keys
        return jax.random.split(jax.random.key(h["seed"]), 5)  # init, train, data, chrono, eval

    def init_one(h):
        k_init, k_train, k_data, k_chrono, _ = keys(h)
        params = model.init(k_init)
        if name == "lstm":  # the bias grid: same weights per seed, only b_i and b_f differ
            params = set_gate_biases(params, h, k_chrono, t_max)
        data = tasks.source(task, k_data, config.batch_size, seq_len).init()
        return state.create(params, tx, k_train, data)

    def loss_fn(params, batch, key):
        metrics = task.metrics(model.apply(params, batch["inputs"]), batch)
        return metrics.pop("loss"), metrics

    train_step = step.make_step(loss_fn, tx, source.next, clip_norm=config.clip_norm)

    def eval_one(s, h):
        batch = task.sample(jax.random.fold_in(keys(h)[4], s.step), config.eval_batch_size, seq_len)
        return task.metrics(model.apply(s.params, batch["inputs"]), batch)

    rows = [(label, b, c, k) for label, b, c in settings for k in seeds]  # setting-major
    hparams = {
        "seed": jnp.array([r[3] for r in rows], jnp.int32),
        "forget_bias": jnp.array([r[1] for r in rows], jnp.float32),
        "chrono": jnp.array([r[2] for r in rows], bool),
    }
    return Group(
        name,
        tuple(r[0] for r in rows),
        tuple(r[3] for r in rows),
        hparams,
        init_one,
        lambda s, h: train_step(s),
        eval_one,
    )


def set_gate_biases(params, h, key, t_max):
    """b_f = h["forget_bias"], b_i = 0; or chrono: b_f ~ log U[1, t_max - 1], b_i = -b_f."""
    layers = []
    for layer, p in enumerate(params["rnn"]):
        H = p["w_h"].shape[0]
        chrono = chrono_bias(jax.random.fold_in(key, layer), H, t_max)
        b_f = jnp.where(h["chrono"], chrono, h["forget_bias"])  # [H]
        b_i = jnp.where(h["chrono"], -chrono, 0.0)  # [H]
        layers.append({**p, "b": p["b"].at[:H].set(b_i).at[H : 2 * H].set(b_f)})
    return {**params, "rnn": layers}


# --- one program for all groups --------------------------------------------------------------


def _sizes(grid: list[Group]) -> list[int]:
    return [len(g.labels) for g in grid]


def combine(states: list[state.TrainState]) -> state.TrainState:
    """Per-group states -> one: model-axis fields concatenated, params/opt_state as tuples."""
    cat = lambda *xs: jnp.concatenate(xs)  # noqa: E731
    return state.TrainState(
        step=cat(*(s.step for s in states)),
        params=tuple(s.params for s in states),
        opt_state=tuple(s.opt_state for s in states),
        key=cat(*(s.key for s in states)),
        data_state=jax.tree.map(cat, *(s.data_state for s in states)),
        health=jax.tree.map(cat, *(s.health for s in states)),
    )


def split(combined: state.TrainState, sizes: list[int]) -> list[state.TrainState]:
    """The inverse of ``combine``: group g's state from the combined one (static slices)."""
    out, start = [], 0
    for g, n in enumerate(sizes):
        part = lambda x, a=start, b=start + n: x[a:b]  # noqa: E731
        out.append(
            state.TrainState(
                step=part(combined.step),
                params=combined.params[g],
                opt_state=combined.opt_state[g],
                key=part(combined.key),
                data_state=jax.tree.map(part, combined.data_state),
                health=jax.tree.map(part, combined.health),
            )
        )
        start += n
    return out


def program(grid: list[Group], strategy: str):
    """(init_state, train_step, evaluate) over every model of ``grid``, for ``loop.train``."""
    sizes = _sizes(grid)
    inits = [sweep.init_models(g.init_one, g.hparams, strategy) for g in grid]
    steps = [sweep.step_models(g.step_one, g.hparams, strategy) for g in grid]
    evals = [sweep.step_models(g.eval_one, g.hparams, strategy) for g in grid]
    cat = lambda *xs: jnp.concatenate(xs)  # noqa: E731

    def train_step(s):
        outs = [fn(part) for fn, part in zip(steps, split(s, sizes))]
        return combine([o[0] for o in outs]), jax.tree.map(cat, *(o[1] for o in outs))

    def evaluate(s):
        return jax.tree.map(cat, *(fn(part) for fn, part in zip(evals, split(s, sizes))))

    return lambda: combine([init() for init in inits]), train_step, evaluate


# --- run -------------------------------------------------------------------------------------


def run(config, workdir: str) -> dict:
    """Trains the grid on every task; returns (and writes) results.json's dict."""
    workdir = Path(workdir)
    runs = setup(config)
    results = {"reference": config.reference, "alpha": config.alpha, "runs": []}
    results["setup"] = {k: config[k] for k in ("hidden_size", "batch_size", "optimizer")}
    results["setup"] |= {k: config[k] for k in ("learning_rate", "num_seeds", "strategy")}
    results["setup"]["strategy_resolved"] = sweep.describe(config.strategy)
    for run_ in runs:
        task, seq_len = run_.task, run_.seq_len
        grid = groups(config, task, seq_len)
        run_dir = workdir / f"{task.name}_T{seq_len}"
        init_state, train_step, evaluate = program(grid, config.strategy)
        start = time.perf_counter()
        loop.train(
            workdir=run_dir,
            init_state=init_state,
            train_step=train_step,
            steps=config.steps,
            log_every=config.log_every,
            checkpoint_every=config.checkpoint_every,
            config={**config.to_dict(), "task": task.name, "seq_len": seq_len},
            resumable=RESUMABLE,
            evaluate=evaluate,
            max_to_keep=config.max_to_keep,
            on_nonfinite=config.on_nonfinite,
            models=sum(_sizes(grid)),
        )
        seconds = round(time.perf_counter() - start, 1)
        logging.info("%s T=%d: %d models in %.0f s", task.name, seq_len, sum(_sizes(grid)), seconds)
        summary = summarize(run_dir, grid, run_, config)
        results["runs"].append(summary | {"seconds_this_call": seconds})
    if jax.process_index() == 0:
        writers.write_json(workdir / "results.json", results)
        plot_curves(workdir / "curves.png", results["runs"])
        plot_steps(workdir / "steps_to_solve.png", results["runs"])
        writers.write_text_atomic(workdir / "report.md", report(str(workdir)))
    return results


def summarize(run_dir, grid: list[Group], run_: Run, config) -> dict:
    """Per setting: solved fraction, steps to solve (median, IQR), final metric, tests."""
    task, seq_len = run_.task, run_.seq_len
    metric, flat = METRIC[task.name], [m for g in grid for m in zip(g.labels, g.seeds)]
    records = [r for r in writers.read_metrics(run_dir) if f"eval_{metric}" in r]
    steps = sorted({r["step"] for r in records})
    curves = np.full((len(flat), len(steps)), np.nan)
    for r in records:
        curves[r["model"], steps.index(r["step"])] = r[f"eval_{metric}"]
    rows, order = {}, list(dict.fromkeys(label for label, _ in flat))
    for label in order:
        idx = [i for i, (lab, _) in enumerate(flat) if lab == label]
        hit = stats.first_crossing(steps, curves[idx], run_.threshold)
        hit_paper = stats.first_crossing(steps, curves[idx], PAPER_THRESHOLD)
        final = curves[idx, -1]
        rows[label] = {
            "label": label,
            "seeds": [flat[i][1] for i in idx],
            "steps_to_solve": hit.tolist(),
            "solved": int(np.isfinite(hit).sum()),
            "steps_quartiles": stats.quartiles(hit),
            "paper_steps_to_solve": hit_paper.tolist(),
            "paper_solved": int(np.isfinite(hit_paper).sum()),
            "final": final.tolist(),
            "final_quartiles": stats.quartiles(np.nan_to_num(final, nan=np.inf)),
            "median_curve": np.nanmedian(curves[idx], axis=0).tolist(),
            "q25_curve": np.nanpercentile(curves[idx], 25, axis=0).tolist(),
            "q75_curve": np.nanpercentile(curves[idx], 75, axis=0).tolist(),
        }
    ref = rows[config.reference]
    for row in rows.values():
        if row is not ref:
            row["p_steps"] = stats.mann_whitney(row["steps_to_solve"], ref["steps_to_solve"])
            f, f_ref = (np.nan_to_num(x, nan=np.inf) for x in (row["final"], ref["final"]))
            row["p_final"] = stats.mann_whitney(f, f_ref)
    return {
        "task": task.name,
        "seq_len": seq_len,
        "metric": metric,
        "rule": task.solved_rule,
        "paper_rule": run_.paper.solved_rule,
        "threshold": run_.threshold,
        "baseline": task.baseline(seq_len) if metric == "loss" else CHANCE_ERROR[task.name],
        "steps": steps,
        "settings": list(rows.values()),
    }


# --- figures and report ----------------------------------------------------------------------


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _title(r: dict) -> str:
    return f"{r['task']} T={r['seq_len']}"


def plot_curves(path: Path, runs: list[dict]) -> Path:
    """Eval metric against step per task: median over seeds and the interquartile band."""
    plt = _pyplot()
    width = 5.2 * len(runs) + 1.8  # the legend's column
    fig, axes = plt.subplots(1, len(runs), figsize=(width, 3.8), dpi=100, squeeze=False)
    for ax, r in zip(axes[0], runs):
        for k, row in enumerate(r["settings"]):
            color = plt.cm.tab10(k % 10)
            style = "-" if row["label"].startswith("lstm") else "--"
            ax.plot(r["steps"], row["median_curve"], style, color=color, lw=1.5, label=row["label"])
            ax.fill_between(r["steps"], row["q25_curve"], row["q75_curve"], color=color, alpha=0.15)
        ax.axhline(r["baseline"], color="gray", lw=1, ls=":", label="memoryless baseline")
        ax.axhline(r["threshold"], color="red", lw=1, ls=":", label=r["rule"])
        if r["threshold"] != PAPER_THRESHOLD:
            ax.axhline(PAPER_THRESHOLD, color="darkred", lw=1, ls="-.", label=r["paper_rule"])
        ax.set_yscale("log" if r["metric"] == "loss" else "linear")
        ax.set_xlabel("step")
        ax.set_ylabel(f"eval {r['metric']} (median, IQR over seeds)")
        ax.set_title(_title(r))
    axes[0, -1].legend(fontsize=7, frameon=False, loc="upper left", bbox_to_anchor=(1.02, 1))
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def plot_steps(path: Path, runs: list[dict]) -> Path:
    """Steps to the headline criterion per seed (dots), median (bar); unsolved on top."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(runs), figsize=(5.2 * len(runs), 3.8), dpi=100, squeeze=False)
    for ax, r in zip(axes[0], runs):
        never = r["steps"][-1] * 1.1
        for x, row in enumerate(r["settings"]):
            y = np.array(row["steps_to_solve"])
            jitter = np.linspace(-0.15, 0.15, len(y))
            ax.scatter(x + jitter, np.where(np.isfinite(y), y, never), s=14, c="C0", zorder=3)
            median = row["steps_quartiles"][1]
            if math.isfinite(median):
                ax.hlines(median, x - 0.3, x + 0.3, color="k", lw=2)
        ax.axhline(never, color="gray", lw=0.8, ls=":")
        ax.text(-0.4, never, "never", va="bottom", fontsize=7, color="gray")
        ax.set_xticks(range(len(r["settings"])), [s["label"] for s in r["settings"]], rotation=60)
        ax.set_ylabel(f"steps to {r['rule']}")
        ax.set_ylim(0, never * 1.08)
        ax.set_title(_title(r))
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def _steps_text(q) -> str:
    q25, q50, q75 = (("never" if not math.isfinite(v) else f"{v:.0f}") for v in q)
    return f"{q50} [{q25}, {q75}]"


# (label, reference, what the literature says)
CLAIMS = (
    ("lstm bf=0", "lstm bf=1", "Jozefowicz et al. 2015: a forget bias of 1 helps the LSTM"),
    ("gru", "lstm bf=1", "Jozefowicz et al. 2015: with b_f = 1 the LSTM closes the gap to the GRU"),
    ("lstm chrono", "lstm bf=1", "Tallec & Ollivier 2018: chrono 7x faster on adding, T=750"),
    (
        "lstm bf=5",
        "lstm bf=1",
        "Gers et al. 2000: bias 5 as fast as the original LSTM, 1 ~3x slower",
    ),
    ("lstm bf=2", "lstm bf=1", "Gers et al. 2000 used biases +0.5 to +2"),
    ("lstm bf=-1", "lstm bf=1", "a negative bias starts with the cell state forgotten each step"),
    ("rnn", "lstm bf=1", "the tanh RNN: no gated memory"),
    ("lstm nfg", "lstm bf=1", "Greff et al. 2017: the forget gate is critical"),
    ("lstm noaf", "lstm bf=1", "Greff et al. 2017: the output activation is critical"),
    ("lstm cifg", "lstm bf=1", "Greff et al. 2017: coupled input-forget gate is fine"),
    ("lstm peepholes", "lstm bf=1", "Greff et al. 2017: peepholes make no difference"),
)


def _claim_lines(r: dict, reference: str, alpha: float) -> list[str]:
    rows = {s["label"]: s for s in r["settings"]}
    out = []
    for label, ref, said in CLAIMS:
        if label not in rows or ref != reference or ref not in rows:
            continue
        a, b = rows[label], rows[ref]
        out.append(
            f"- {label} vs {ref} ({said}): solved {a['solved']}/{len(a['seeds'])} vs "
            f"{b['solved']}/{len(b['seeds'])}, median steps {_steps_text(a['steps_quartiles'])} "
            f"vs {_steps_text(b['steps_quartiles'])}: {stats.verdict(a['p_steps'], alpha)}; "
            f"final {r['metric']} {a['final_quartiles'][1]:.3g} vs {b['final_quartiles'][1]:.3g}: "
            f"{stats.verdict(a['p_final'], alpha)}."
        )
    return out


def report(workdir: str) -> str:
    """The markdown section for runs/…/report.md; figure paths are relative to its parent."""
    workdir = Path(workdir)
    path = workdir / "results.json"
    if not path.exists():
        return "## Forget-gate bias and LSTM variants\n\nNo results yet.\n"
    res = json.loads(path.read_text())
    ref, alpha = res["reference"], res["alpha"]
    lines = [
        "## Forget-gate bias and LSTM variants",
        "",
        "LSTMs with forget-gate bias b_f (chrono: b_f ~ log U[1, T-1], b_i = -b_f; Tallec & "
        "Ollivier 2018), GRU and tanh RNN, paired seeds (same data and weights per seed). "
        "Steps to solve: the first eval (every log_every steps) meeting the rule; median "
        "[25th, 75th percentile] over seeds, 'never' where that share of seeds did not. "
        f"p: exact two-sided Mann-Whitney permutation test against {ref} (unsolved = never; "
        "ignores pairing, so conservative), not corrected for multiple comparisons (with m "
        "comparisons about m x alpha false positives are expected). The headline rule is the "
        "CPU-scale one (--config.solved_at); 'paper rule' is the papers' (MSE < 0.01, error "
        "< 1%).",
        "",
    ]
    if "setup" in res:
        lines += [
            "Model: H={hidden_size}, batch {batch_size}, {optimizer} lr {learning_rate:g}, "
            "{num_seeds} seeds, strategy {strategy} ({strategy_resolved}).".format(
                **{"strategy_resolved": "-", **res["setup"]}
            ),
            "",
        ]
    for r in res["runs"]:
        lines += [
            f"### {_title(r)}: headline rule {r['rule']}, paper rule {r['paper_rule']} "
            f"(memoryless baseline {r['baseline']:.3g}; {r['steps'][-1]} steps; "
            f"{r.get('seconds_this_call', float('nan')):.0f} s wall this call)",
            "",
            f"| setting | solved | steps to solve | p (steps) | paper rule solved | "
            f"final eval {r['metric']} | p (final) |",
            "|---|---|---|---|---|---|---|",
        ]
        for s in r["settings"]:
            n, fq = len(s["seeds"]), s["final_quartiles"]
            p = lambda k, s=s: f"{s[k]:.2g}" if k in s else "ref"  # noqa: E731
            lines.append(
                f"| {s['label']} | {s['solved']}/{n} | {_steps_text(s['steps_quartiles'])} | "
                f"{p('p_steps')} | {s['paper_solved']}/{n} | {fq[1]:.3g} [{fq[0]:.3g}, "
                f"{fq[2]:.3g}] | {p('p_final')} |"
            )
        lines += ["", *_claim_lines(r, ref, alpha), ""]
    for name in ("curves", "steps_to_solve"):
        if (workdir / f"{name}.png").exists():
            lines.append(f"![{name}]({(workdir / f'{name}.png').relative_to(workdir.parent)})")
    return "\n".join(lines) + "\n"


def demo(workdir: str) -> None:
    """The demo for experiments.reproduce: the ":demo" config into ``workdir``."""
    from experiments.configs import forget_bias as configs

    run(configs.get_config("demo"), workdir)


if __name__ == "__main__":
    _cli.main({"train": run}, name="forget_bias", cpu_devices=_cli.cores())
