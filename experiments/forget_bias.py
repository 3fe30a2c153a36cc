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

import time
from pathlib import Path
from typing import NamedTuple

import jax
import numpy as np
from absl import logging

from experiments import _cli
from experiments._forget_bias_grid import (
    GREFF,
    Group,
    _names,
    _sizes,
    groups,
    labels,
    program,
    variant_names,
)
from experiments._forget_bias_grid import split as split  # tests call it
from experiments._forget_bias_report import PAPER_THRESHOLD, plot_curves, plot_steps
from experiments._forget_bias_report import report as report  # experiments.reproduce calls it
from rnnlab import cells
from rnnlab.analysis import stats
from rnnlab.data import tasks
from rnnlab.train import loop, step, sweep, writers

# Fields that change neither a model nor its data: they may differ when resuming.
RESUMABLE = ("steps", "log_every", "checkpoint_every", "max_to_keep", "tasks", "solved_at")
RESUMABLE += ("reference", "alpha")
METRIC = {"adding": "loss", "copy": "error", "temporal_order": "error"}  # the curve to judge
CHANCE_ERROR = {"copy": 7 / 8, "temporal_order": 3 / 4}  # memoryless error, for "error" curves


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


def demo(workdir: str) -> None:
    """The demo for experiments.reproduce: the ":demo" config into ``workdir``."""
    from experiments.configs import forget_bias as configs

    run(configs.get_config("demo"), workdir)


if __name__ == "__main__":
    _cli.main({"train": run}, name="forget_bias", cpu_devices=_cli.cores())
