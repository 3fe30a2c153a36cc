"""What a char_lm run shows its reader, for experiments.char_lm: the samples taken as training
goes on (samples.jsonl, samples.txt), the hidden units most correlated with a text feature
(units.html, unit_<u>.png), the learning curve and the run's section of the demo report."""

from __future__ import annotations

import json
from pathlib import Path

import jax.numpy as jnp
import numpy as np

from experiments import _cli
from experiments._char_lm_data import Data
from rnnlab.analysis import figures, text_features, visualize
from rnnlab.models import lm
from rnnlab.train import writers

# --- samples ---------------------------------------------------------------------------------


def write_sample(workdir: Path, step_: int, config, sample: str) -> None:
    """Adds a sample to samples.jsonl (dropping any from step_ on: a resumed run's rewrite)."""
    entry = {
        "step": step_,
        "temperature": config.temperature,
        "top_k": config.top_k,
        "text": sample,
    }
    records = [r for r in read_samples(workdir) if r["step"] < step_] + [entry]
    writers.write_text_atomic(
        workdir / "samples.jsonl", "".join(json.dumps(r) + "\n" for r in records)
    )
    writers.write_text_atomic(workdir / "samples.txt", "".join(map(format_sample, records)))


def format_sample(r: dict) -> str:
    return (
        f"=== step {r['step']} (temperature {r['temperature']}, top_k {r['top_k']}) ===\n"
        f"{r['text']}\n\n"
    )


def read_samples(workdir: Path) -> list[dict]:
    path = Path(workdir) / "samples.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


# --- hidden units ----------------------------------------------------------------------------


def chosen_units(c) -> list[int]:
    try:
        return [int(u) for u in c.vis_units.replace(" ", "").split(",") if u]
    except ValueError:
        raise _cli.UsageError(
            f"--config.vis_units={c.vis_units!r}: expected comma-separated ints, e.g. '3,17'"
        ) from None


def visualise(workdir: Path, config, spec: lm.LMSpec, params, data: Data) -> list[dict]:
    """Ranks the last layer's units by correlation with the text features; draws the best.

    Activations: tanh(c) for a cell with a cell state c (LSTM), else h, after each character of
    vis_chars of the valid text from its first full line (from the zero state). Writes
    units.html (every unit picked, on the first vis_show_chars) and unit_<u>.png for each.

    Returns:
        [{"unit", "feature", "r", "png"}]: per feature (those constant on this text left out) the
        vis_top best units not picked for an earlier feature, then the chosen vis_units (with
        their best feature).
    """
    start = data.valid_text.find("\n", 0, config.vis_chars) + 1  # 0 if no newline
    shown_text = data.valid_text[start : start + config.vis_chars]
    layer = lm.hidden_states(spec, params, data.vocab.encode(shown_text))[-1]
    kind = "tanh(c)" if "c" in layer else "h"
    acts = np.asarray(jnp.tanh(layer["c"]) if "c" in layer else layer["h"])  # [N, H], host sync
    features = text_features.features(shown_text, data.language)
    features = {k: v for k, v in features.items() if np.ptp(v) > 0}
    ranked = text_features.rank_units(acts, features, top=acts.shape[1])
    picks = []
    for feature, scores in ranked.items():
        fresh = [s for s in scores if s.unit not in {u for u, _, _ in picks}]
        picks += [(s.unit, feature, s.correlation) for s in fresh[: config.vis_top]]
    for u in [u for u in chosen_units(config) if u not in {p[0] for p in picks}]:
        rs = {f: float(text_features.correlations(acts[:, [u]], v)[0]) for f, v in features.items()}
        best = max(rs, key=lambda f: abs(rs[f])) if rs else "-"
        picks.append((u, best, rs.get(best, 0.0)))
    n = config.vis_show_chars
    pages, units = {}, []
    for u, feature, r in picks:
        label = f"unit {u} ({kind}), r = {r:+.2f} with {feature}"
        pages[label] = acts[:n, u]
        png = visualize.write_png(
            workdir / f"unit_{u}.png", shown_text[:n], acts[:n, u], title=label
        )
        units.append({"unit": u, "feature": feature, "r": r, "png": Path(png).name})
    visualize.write_html(
        workdir / "units.html",
        shown_text[:n],
        pages,
        title=f"{config.cell} units on {config.corpus}",
    )
    return units


# --- figures, report -------------------------------------------------------------------------


def plot(workdir: Path, unigram: float, config) -> Path:
    """learning_curve.png: train and validation bpc against the step, with the unigram line."""
    return figures.learning_curve(
        workdir / "learning_curve.png",
        writers.read_metrics(workdir),
        "bpc",
        "eval_bpc",
        reference=unigram,
        labels=("train (last batch)", "valid", "unigram (valid)"),
        ylabel="bits per character",
        title=f"{config.cell} {config.hidden_size} on {config.corpus}",
    )


def report(workdir: str) -> str:
    """The markdown section for runs/…/report.md; figure paths are relative to its parent."""
    workdir = Path(workdir)
    res = json.loads((workdir / "results.json").read_text())
    rel = lambda name: (workdir / name).relative_to(workdir.parent)  # noqa: E731
    samples = read_samples(workdir)
    picks = [samples[0], samples[len(samples) // 2], samples[-1]] if len(samples) >= 3 else samples
    lines = [
        "## Character-level language model (Karpathy, Johnson & Fei-Fei 2015)",
        "",
        f"{res['cell']} {res['hidden_size']} on `{res['corpus']}` "
        f"({res['characters']['train']:,} train characters, V = {res['vocab_size']}), "
        f"{res['steps']} steps of truncated BPTT ({res['train_characters']:,} characters read).",
        "",
        "| text | bits per character | unigram baseline |",
        "|---|---|---|",
        *(
            f"| {k} | {res['bpc'][k]:.3f} | {res['unigram_bpc'][k]:.3f} |"
            for k in ("valid", "test")
        ),
        "",
        f"![learning curve]({rel('learning_curve.png')})",
        "",
        "Samples (temperature, top_k as logged) as training goes on:",
        "",
    ]
    for s in picks:
        excerpt = s["text"][:300].replace("```", "'''")
        lines += [
            f"Step {s['step']} (temperature {s['temperature']}):",
            "",
            "```",
            excerpt,
            "```",
            "",
        ]
    top = sorted(res["units"], key=lambda u: -abs(u["r"]))[:2]
    lines += ["Hidden units (red -1, blue +1), the two most correlated with a text feature:", ""]
    for u in top:
        lines += [
            f"Unit {u['unit']}, r = {u['r']:+.2f} with {u['feature']}:",
            "",
            f"![unit {u['unit']}]({rel(u['png'])})",
            "",
        ]
    lines.append(f"All units shown: [{rel('units.html')}]({rel('units.html')})")
    return "\n".join(lines) + "\n"
