"""Part 3 of experiments.gradient_flow: training with and without clipping (Pascanu 2013, sec. 5).

The grids' specs, training (resumable) and testing them, the claims they check, their figures and
the report's section.
"""

from __future__ import annotations

import time
from pathlib import Path

from experiments import _cli
from rnnlab.analysis import figures, pascanu_training
from rnnlab.train import sweep

# --- part 3: training with and without clipping ----------------------------------------------

# Part-3 fields that change no model and no data stream: they may differ when resuming.
TRAINING_RESUMABLE = ("steps", "test_size", "eval_batch_size", "threshold", "strategy")


def _training_specs(tc) -> list:
    """One ``pascanu_training.Spec`` per task and length, checked before anything compiles."""
    specs = []
    for task in tc.tasks:
        for seq_len in tc.seq_lens:
            spec = pascanu_training.Spec(
                task=task, seq_len=seq_len, inits=tuple(tc.inits), methods=tuple(tc.methods),
                seeds=tuple(range(tc.num_seeds)), hidden_size=tc.hidden_size,
                batch_size=tc.batch_size, optimizer=tc.optimizer,
                learning_rate=tc.learning_rate, clip_norm=tc.clip_norm,
                omega_weight=tc.omega_weight, chunk_steps=tc.chunk_steps,
                eval_batch_size=tc.eval_batch_size, test_size=tc.test_size,
                threshold=tc.threshold, adding_tolerance=tc.adding_tolerance,
                spike_factor=tc.spike_factor, spike_window=tc.spike_window,
                strategy=tc.strategy,
            )  # fmt: skip
            try:
                pascanu_training.check(spec)
            except ValueError as e:
                raise _cli.UsageError(f"--config.training: {e}") from None
            specs.append(spec)
    return specs


def _training_study(config, specs, workdir: Path) -> dict:
    """Part 3: every grid trained (or resumed) and tested; the table and seed-0 traces."""
    runs = []
    for spec in specs:
        run_dir = workdir / "training" / f"{spec.task}_L{spec.seq_len}"
        tick = time.time()
        r = pascanu_training.train_grid(
            spec, run_dir, steps=config.training.steps, seed=config.seed,
            checkpoint_every=config.training.checkpoint_every, resumable=TRAINING_RESUMABLE,
        )  # fmt: skip
        traces = pascanu_training.traces(spec, run_dir)
        by_model = {(m["init"], m["method"], m["seed"]): m for m in r["models"]}
        for key, m in by_model.items():  # the spikes' steps and ratios, as they happened
            m["spike_log"] = traces[key]["spikes"]
        r["traces"] = {f"{i}/{m}": traces[(i, m, s)] for i, m, s in traces if s == spec.seeds[0]}
        r["seconds_this_call"] = round(time.time() - tick, 1)
        r["strategy"] = f"{spec.strategy}: {sweep.describe(spec.strategy)}"
        runs.append(r)
    return dict(runs=runs, table=pascanu_training.success_table(runs))


def _compare(table, better, worse, by=("task", "seq_len", "init")) -> tuple:
    """(holds, informative, text): solved(better) >= solved(worse) in every matching cell."""
    cells, lines = {}, []
    for r in table:
        cells.setdefault(tuple(r[k] for k in by), {})[
            r["method"] if "init" in by else r["init"]
        ] = r
    pairs = [(k, c[better], c[worse]) for k, c in cells.items() if better in c and worse in c]
    holds = all(a["solved"] >= b["solved"] for _, a, b in pairs)
    informative = any(a["solved"] + b["solved"] > 0 for _, a, b in pairs)
    for k, a, b in pairs:
        lines.append(f"{'/'.join(map(str, k))}: {a['solved']}/{a['seeds']} vs "
                     f"{b['solved']}/{b['seeds']}")  # fmt: skip
    return bool(pairs) and holds, informative, "; ".join(lines)


def _training_claims(tc, table) -> list[dict]:
    """Part 3's claims, each with its measurement and verdict (None: nothing to judge by)."""
    out = []
    clipped = [r for r in table if r["method"] != "none"]
    free = [r for r in table if r["method"] == "none"]
    if clipped:
        bound = tc.learning_rate * tc.clip_norm
        worst = max(r["max_update_norm"] for r in clipped)
        out.append(dict(
            part=3, cell="all clipped models", agrees=bool(worst <= bound * (1 + 1e-5)),
            claim=f"norm clipping bounds every update: ||delta theta|| <= lr c = {bound:g}",
            measured=f"largest update with clipping {worst:.6g}; without clipping "
                     f"{max((r['max_update_norm'] for r in free), default=float('nan')):.4g}",
        ))  # fmt: skip
    if free:
        spiked = sum(r["models_with_spikes"] for r in free)
        n = sum(r["seeds"] for r in free)
        detail = "; ".join(f"{r['task']}/L={r['seq_len']}/{r['init']}/{m}: "
                           f"{r['models_with_spikes']}/{r['seeds']} (max {r['max_ratio']:.0f}x)"
                           for m in tc.methods for r in table if r["method"] == m)  # fmt: skip
        out.append(dict(
            part=3, cell="no clipping", agrees=bool(spiked > 0),
            claim=f"gradients explode during training: ||dE/dtheta|| jumps over "
                  f"{tc.spike_factor:g}x its running median",
            measured=f"{spiked}/{n} unclipped models spiked; per grid (models with spikes): "
                     + detail,
        ))  # fmt: skip
    for better, worse, claim in (
        ("clip", "none", "clipping solves at least as often as plain SGD (fig. 7)"),
        ("clip_omega", "clip", "clipping + Omega solves at least as often as clipping alone, "
                               "Omega helping against vanishing gradients (fig. 7)"),
    ):  # fmt: skip
        if better in tc.methods and worse in tc.methods:
            holds, informative, text = _compare(table, better, worse)
            out.append(dict(part=3, cell=f"{better} vs {worse}", claim=claim,
                            measured=f"solved per task/L/init: {text}",
                            agrees=holds if informative else None))  # fmt: skip
    if "smart" in tc.inits and "clip" in tc.methods:
        rows = [r for r in table if r["method"] == "clip"]
        for other in (i for i in tc.inits if i != "smart"):
            holds, informative, text = _compare(rows, "smart", other, by=("task", "seq_len"))
            out.append(dict(part=3, cell=f"smart vs {other} (clip)",
                            claim=f"the smart init (sparse W_h, radius 0.95) solves at least as "
                                  f"often as the {other} init, both clipped (fig. 7)",
                            measured=f"solved per task/L: {text}",
                            agrees=holds if informative else None))  # fmt: skip
    return out


def _training_figures(workdir: Path, training) -> list[str]:
    figures.success_vs_length(workdir / "success_vs_length.png", training["table"])
    run_ = max(training["runs"], key=lambda r: (r["spec"]["task"] == "temporal_order",
                                                r["spec"]["seq_len"]))  # fmt: skip
    panels = {}
    for key, trace in run_["traces"].items():
        init, method = key.split("/")
        panels.setdefault(f"{init} init", {})[method] = trace
    spec = run_["spec"]
    figures.grad_norm_traces(
        workdir / "grad_norms.png", panels,
        title=f"||dE/dtheta|| during training, {spec['task']} L={spec['seq_len']}, seed "
              f"{spec['seeds'][0]}; x: spike (> {spec['spike_factor']:g}x running median)",
    )  # fmt: skip
    return ["success_vs_length.png", "grad_norms.png"]


def _training_section(training, rel) -> list[str]:
    """Part 3's head: what was run (CPU default vs the paper's values), the figures, the table."""
    if not training:
        return []
    spec = training["runs"][0]["spec"]
    lines = [
        "### Training with and without clipping (Pascanu 2013, sec. 5, fig. 7)",
        "",
        f"tanh/sigmoid RNN, H = {spec['hidden_size']}, plain {spec['optimizer'].upper()} at lr "
        f"{spec['learning_rate']:g}, batch {spec['batch_size']}, "
        f"{training['runs'][0]['steps']:,} steps per model; clipping threshold "
        f"{spec['clip_norm']:g}, Omega weight {spec['omega_weight']:g}; "
        f"{len(spec['seeds'])} paired seeds. Success: error under {spec['threshold']:.0%} on "
        f"{spec['test_size']:,} fresh sequences (adding: |y - target| >= "
        f"{spec['adding_tolerance']:g} counts as an error). The paper's values (SGD lr 0.01, "
        "L up to 200, millions of sequences) are the `paper` config, not run here: at lr 0.01 "
        "SGD learns nothing in minutes on a CPU (CALIBRATION.md), so lr and the step budget "
        "are the measured CPU default and the success rates are at this budget, not the "
        "paper's.",
        "",
        f"![success rate against length]({rel}/success_vs_length.png)",
        f"![gradient norms]({rel}/grad_norms.png)",
        "",
        "| task | L | init | method | solved | median test error | models with spikes "
        "| spikes | largest ratio | largest update |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in training["table"]:
        lines.append(
            f"| {r['task']} | {r['seq_len']} | {r['init']} | {r['method']} | "
            f"{r['solved']}/{r['seeds']} | {r['median_test_error']:.3f} | "
            f"{r['models_with_spikes']}/{r['seeds']} | {r['spikes']} | {r['max_ratio']:.1f}x | "
            f"{r['max_update_norm']:.3g} |"
        )
    seconds = ", ".join(
        f"{r['spec']['task']} L={r['spec']['seq_len']}: {r['seconds_this_call']:.0f} s"
        for r in training["runs"]
    )
    where = training["runs"][0].get("strategy", "-") if training["runs"] else "-"
    return lines + ["", f"Wall time (this call; sweep strategy {where}): {seconds}.", ""]
