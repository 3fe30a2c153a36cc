"""What a forget_bias study shows its reader, for experiments.forget_bias: the figures (eval
curves per setting, steps to solve per seed), the literature's claims set against the results,
and the study's section of the demo report."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from rnnlab.analysis import stats

PAPER_THRESHOLD = 0.01  # MSE (adding), error (copy, temporal order)


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
