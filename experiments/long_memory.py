"""Long-memory tasks: train one cell on adding, copy or temporal order; report when it solved.

    python -m experiments.long_memory --workdir=DIR --config.task=adding --config.seq_len=200 \
        --config.cell=lstm

Writes DIR/config.json, metrics.jsonl (train and eval metrics every log_every steps), TensorBoard
events, checkpoints/, results.json (final eval metrics, baseline, solved criterion and the first
logged step that met it) and learning_curve.png. See experiments/configs/long_memory.py.
"""

from __future__ import annotations

import ast
import json
from pathlib import Path

import jax
from absl import logging

from experiments import _cli
from rnnlab import cells
from rnnlab.analysis import figures
from rnnlab.data import tasks
from rnnlab.models import sequence
from rnnlab.train import loop, parallel, state, step, writers

# Fields that may change when resuming: they change neither the model nor the data.
RESUMABLE = ("steps", "log_every", "checkpoint_every", "max_to_keep", "eval_batch_size")


def parse_options(text: str, field: str = "cell_options") -> dict:
    """'forget_bias=2.0, peepholes=True' -> {"forget_bias": 2.0, "peepholes": True}."""
    if not text.strip():
        return {}
    try:
        call = ast.parse(f"f({text})", mode="eval").body
        if call.args:
            raise ValueError("expected name=value pairs")
        return {kw.arg: ast.literal_eval(kw.value) for kw in call.keywords}
    except (SyntaxError, ValueError) as e:
        raise _cli.UsageError(f"--config.{field}={text!r}: {e} (e.g. 'forget_bias=2.0')") from None


def setup(config, mesh):
    """Checks every value and builds the task and the cell, before anything is compiled.

    Raises:
        experiments._cli.UsageError: naming the field and the reason.
    """
    c = config
    _cli.check_ints(
        c,
        (
            "steps",
            "batch_size",
            "log_every",
            "checkpoint_every",
            "eval_batch_size",
            "hidden_size",
            "num_layers",
            "max_to_keep",
        ),
        1,
        "must be a positive int",
    )
    _cli.check_splits(c, mesh.devices.size)
    _cli.check_choices(
        c,
        (
            ("optimizer", step.OPTIMIZERS),
            ("schedule", step.SCHEDULES),
            ("on_nonfinite", loop.ON_NONFINITE),
        ),
    )
    _cli.check(c.learning_rate > 0, "learning_rate", c.learning_rate, "must be positive")
    for field in ("clip_norm", "clip_value", "warmup_steps"):
        _cli.check(c[field] >= 0, field, c[field], "must be >= 0 (0 disables)")
    task_options = {} if c.solved_threshold < 0 else {"threshold": c.solved_threshold}
    try:
        task = tasks.get(c.task, **task_options)
    except ValueError as e:
        raise _cli.UsageError(f"--config.task={c.task!r}: {e}") from None
    try:
        task.check_seq_len(c.seq_len)
    except ValueError as e:
        raise _cli.UsageError(f"--config.seq_len={c.seq_len!r}: {e}") from None
    try:
        cell = cells.get(c.cell, **parse_options(c.cell_options))
    except (ValueError, TypeError) as e:
        raise _cli.UsageError(f"--config.cell={c.cell!r}: {e}") from None
    return task, cell


def run(config, workdir: str) -> dict:
    """Trains ``config.cell`` on ``config.task``; returns (and writes) results.json's dict."""
    workdir = Path(workdir)
    mesh = parallel.make_mesh()
    task, cell = setup(config, mesh)

    # Data and model. One named key each; step s draws fold_in(key, s).
    k_init, k_train, k_data, k_eval = jax.random.split(jax.random.key(config.seed), 4)
    source = tasks.source(task, k_data, config.batch_size, config.seq_len)
    model = sequence.make(
        cell,
        input_size=task.input_size,
        hidden_size=config.hidden_size,
        output_size=task.output_size,
        num_layers=config.num_layers,
        readout=task.readout,
    )

    def loss_fn(params, batch, key):
        metrics = task.metrics(model.apply(params, batch["inputs"]), batch)
        return metrics.pop("loss"), metrics

    def evaluate(s):
        batch = task.sample(
            jax.random.fold_in(k_eval, s.step), config.eval_batch_size, config.seq_len
        )
        batch = parallel.shard_batch(batch, mesh)  # each device scores its share
        return task.metrics(model.apply(s.params, batch["inputs"]), batch)

    # State and compiled step.
    lr = step.schedule(config.schedule, config.learning_rate, config.steps, config.warmup_steps)
    tx = step.optimizer(config.optimizer, lr)
    train_step = step.make_step(
        loss_fn,
        tx,
        source.next,
        grad_fn=parallel.data_parallel_grad(loss_fn, mesh),
        clip_norm=config.clip_norm,
        clip_value=config.clip_value,
        learning_rate=lr,
    )
    final = loop.train(
        workdir=workdir,
        init_state=lambda: state.create(model.init(k_init), tx, k_train, source.init()),
        train_step=train_step,
        steps=config.steps,
        log_every=config.log_every,
        checkpoint_every=config.checkpoint_every,
        config=config,
        resumable=RESUMABLE,
        evaluate=evaluate,
        max_to_keep=config.max_to_keep,
        on_nonfinite=config.on_nonfinite,
        mesh=mesh,
    )

    # Results and figure (process 0).
    results = summarize(workdir, task, config)
    results["params_sha256"] = state.checksum(final.params)
    results["devices"] = mesh.devices.size  # each batch was split over these
    logging.info(
        "final params sha256 %s (process %d)", results["params_sha256"], jax.process_index()
    )
    if jax.process_index() == 0:
        writers.write_json(workdir / "results.json", results)
        plot(workdir, task, config)
    return results


def summarize(workdir: Path, task: tasks.Task, config) -> dict:
    """Final eval metrics, the baseline and the first logged step meeting the solved rule."""
    records = writers.read_metrics(workdir)
    evals = [
        {k[5:]: v for k, v in r.items() if k.startswith("eval_")} | {"step": r["step"]}
        for r in records
        if "eval_loss" in r
    ]
    solved_step = next((e["step"] for e in evals if task.solved(e)), None)
    last = evals[-1] if evals else {}
    return {
        "task": task.name,
        "cell": config.cell,
        "seq_len": config.seq_len,
        "steps": config.steps,
        "baseline_loss": task.baseline(config.seq_len),
        "final_eval": {k: v for k, v in last.items() if k != "step"},
        "solved_rule": task.solved_rule,
        "solved": solved_step is not None,
        "solved_step": solved_step,
        "skipped_updates": records[-1].get("skipped", 0) if records else 0,
    }


def plot(workdir: Path, task: tasks.Task, config) -> Path:
    """learning_curve.png: train and eval loss against the step, with the baseline."""
    return figures.learning_curve(
        workdir / "learning_curve.png",
        writers.read_metrics(workdir),
        "loss",
        "eval_loss",
        reference=task.baseline(config.seq_len),
        labels=("train", "eval", "baseline"),
        ylabel="loss",
        title=f"{config.cell} on {task.name}, T={config.seq_len}",
        log_y=True,
    )


def report(workdir: str) -> str:
    """The markdown section for runs/…/report.md; figure paths are relative to its parent."""
    workdir = Path(workdir)
    runs = sorted(p.parent for p in workdir.glob("**/results.json"))
    lines = [
        "## Long-memory tasks",
        "",
        "Adding (Hochreiter & Schmidhuber 1997; Le et al. 2015), copy (Arjovsky et al. 2016) "
        "and temporal order (Pascanu et al. 2013). Eval metrics on fresh sequences.",
        "",
        "| run | task | cell | T | steps | final eval loss | baseline | solved (rule) | at step |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in runs:
        res = json.loads((r / "results.json").read_text())
        lines.append(
            f"| {r.relative_to(workdir.parent)} | {res['task']} | {res['cell']} | "
            f"{res['seq_len']} | {res['steps']} | {res['final_eval'].get('loss', float('nan')):.4g}"
            f" | {res['baseline_loss']:.4g} | {'yes' if res['solved'] else 'no'} "
            f"({res['solved_rule']}) | {res['solved_step'] or '-'} |"
        )
    lines.append("")
    for r in runs:
        if (r / "learning_curve.png").exists():
            rel = (r / "learning_curve.png").relative_to(workdir.parent)
            lines.append(f"![{r.name}]({rel})")
    return "\n".join(lines) + "\n"


def demo(workdir: str) -> None:
    """The demo for experiments.reproduce: the ":demo" config, once per cell in DEMO_CELLS."""
    from experiments.configs import long_memory as configs

    for cell in DEMO_CELLS:
        config = configs.get_config("demo")
        config.cell = cell
        run_dir = Path(workdir) / f"{config.task}_{cell}"
        run_dir.mkdir(parents=True, exist_ok=True)
        run(config, str(run_dir))


DEMO_CELLS = ("lstm", "rnn")  # the gated cell solves adding at T=50 in the demo; tanh RNN not


if __name__ == "__main__":
    _cli.main({"train": run}, name="long_memory", cpu_devices=_cli.batch_devices)
