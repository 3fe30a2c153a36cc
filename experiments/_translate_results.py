"""What a translation run finds and shows, for experiments.translate: the jitted decoders,
each model scored on the test split (greedy and beam; exact match and sacrebleu BLEU, overall
and by length; attention samples), the figures and the run's section of the demo report."""

from __future__ import annotations

import json
from pathlib import Path

import jax
import numpy as np
from absl import logging

from experiments._translate_data import Data, encode
from rnnlab.data import device_source
from rnnlab.data import pairs as pairs_lib
from rnnlab.models import seq2seq as s2s
from rnnlab.train import parallel, writers

# --- evaluation --------------------------------------------------------------------------------


_DECODERS: dict = {}  # one jitted decoder per model and setting, so repeated runs reuse it


def make_decoder(cell_name: str, spec, max_len: int, beam_size: int = 1, alpha: float = 0.0):
    """Jitted (params, src [B, S], src_lengths [B]) -> Decoded; compiles once per shape.

    Cached by ``cell_name`` and the rest of the spec (``cells.get`` builds a new Cell, with new
    functions, on every call, though the name fixes what they compute).
    """
    key = (cell_name, spec._replace(cell=None), max_len, beam_size, alpha)
    if key not in _DECODERS:
        kw = dict(bos_id=pairs_lib.BOS_ID, eos_id=pairs_lib.EOS_ID, max_len=max_len)
        _DECODERS[key] = jax.jit(
            lambda p, src, lengths: s2s.decode(
                spec,
                p,
                *parallel.shard_batch((src, lengths)),
                beam_size=beam_size,
                alpha=alpha,
                **kw,
            )  # each device decodes its share of the batch
        )
    return _DECODERS[key]


def translate_batches(decoder, params, sources: list[list[int]], batch_size: int, width: int):
    """Decodes encoded sources in fixed [batch_size, width] batches (the last padded by
    repeating its first row); returns (tokens [N, L], attention weights [N, L, width])."""
    tokens, weights = [], []
    for start in range(0, len(sources), batch_size):
        chunk = sources[start : start + batch_size]
        chunk = chunk + [chunk[0]] * (batch_size - len(chunk))
        src, src_len = device_source.pad(chunk, width)
        out = decoder(params, src, src_len)
        best = (lambda a: a[:, 0]) if out.tokens.ndim == 3 else (lambda a: a)  # beam: the best
        tokens.append(np.asarray(best(out.tokens)))  # host sync
        weights.append(np.asarray(best(out.extras)))
    n = len(sources)
    return np.concatenate(tokens)[:n], np.concatenate(weights)[:n]


def length_bins(lengths: np.ndarray, num_bins: int = 8) -> list[tuple[int, int]]:
    """Equal-width, integer bins (lo, hi inclusive) covering the lengths."""
    lo, hi = int(lengths.min()), int(lengths.max())
    width = max(1, -(-(hi - lo + 1) // num_bins))
    return [(a, min(a + width - 1, hi)) for a in range(lo, hi + 1, width)]


def score(hyps: list[list[str]], refs: list[list[str]], detok, tokenize: str) -> dict:
    """Exact match (token lists equal) and sacrebleu corpus BLEU, both in percent."""
    import sacrebleu

    exact = float(np.mean([h == r for h, r in zip(hyps, refs)])) * 100
    bleu = sacrebleu.corpus_bleu(
        [detok(h) for h in hyps],
        [[detok(r) for r in refs]],
        tokenize=tokenize,  # refs: a list
    )
    return {"exact": exact, "bleu": float(bleu.score)}


def evaluate(config, spec, params, data: Data, max_len: int) -> dict:
    """Greedy and beam on the whole test split: overall, by length, and heatmap samples."""
    test, vocab = encode(data, "test"), data.target_vocab
    sources = [s for s, _ in test]
    # The widest source of train and test, as --mode=translate pads: one compiled shape for both.
    width = max(*map(len, sources), *(len(s) + 1 for s, _ in data.splits["train"]))
    refs = [t for _, t in data.splits["test"]]
    tokenize = config.bleu_tokenize
    if tokenize == "auto":
        tokenize = "none" if data.pretokenized else "13a"
    detok = data.tokenizer.detokenize
    axis = "target" if config.dataset.startswith("scan:") else "source"
    lengths = np.array([len(t if axis == "target" else s) for s, t in data.splits["test"]])
    results = {"dataset": config.dataset, "num_test": len(test), "length_axis": axis,
               "bleu_tokenize": tokenize, "beam_size": config.beam_size}  # fmt: skip
    for name, beam in (("greedy", 1), ("beam", config.beam_size)):
        decoder = make_decoder(config.cell, spec, max_len, beam, config.alpha)
        tokens, weights = translate_batches(decoder, params, sources, config.eval_batch_size, width)
        hyps = [vocab.decode(row) for row in tokens]
        results[name] = score(hyps, refs, detok, tokenize)
        results[f"{name}_by_length"] = [
            {"lo": lo, "hi": hi, "n": int(sel.sum())}
            | score(
                [hyps[i] for i in np.flatnonzero(sel)],
                [refs[i] for i in np.flatnonzero(sel)],
                detok,
                tokenize,
            )  # fmt: skip
            for lo, hi in length_bins(lengths)
            if (sel := (lengths >= lo) & (lengths <= hi)).any()
        ]
        if name == "greedy":
            results["samples"] = _samples(config, data, hyps, weights, lengths)
        logging.info("%s %s: %s", spec.attention, name, results[name])
    return results


def _samples(config, data: Data, hyps, weights, lengths) -> list[dict]:
    """Test sentences at evenly spaced length quantiles, with their attention [out, src]."""
    order = np.argsort(lengths, kind="stable")
    picks = [
        int(order[int(q * (len(order) - 1))]) for q in np.linspace(0.4, 1.0, config.num_heatmaps)
    ]
    out = []
    for i in picks:
        src, ref = data.splits["test"][i]
        n_out, n_src = len(hyps[i]) + 1, len(src) + 1  # with <eos>
        out.append({"source": src + ["<eos>"], "output": hyps[i] + ["<eos>"], "reference": ref,
                    "weights": np.round(weights[i][:n_out, :n_src], 4).tolist()})  # fmt: skip
    return out


# --- figures -----------------------------------------------------------------------------------


def plot(workdir: Path, models: dict) -> None:
    """attention_<kind>.png, by_length.png and learning_curves.png."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    for kind, res in models.items():
        if kind == "none" or not res["samples"]:
            continue
        samples = res["samples"]
        fig, axes = plt.subplots(1, len(samples), figsize=(4.2 * len(samples), 5.5), dpi=100)
        for ax, s in zip(np.atleast_1d(axes), samples):
            ax.imshow(np.array(s["weights"]), cmap="gray", vmin=0, vmax=1, aspect="auto")
            ax.set_xticks(range(len(s["source"])), s["source"], rotation=90, fontsize=7)
            ax.set_yticks(range(len(s["output"])), s["output"], fontsize=6)
            ax.xaxis.tick_top()
        fig.suptitle(f"{kind} attention (source along x, output along y)", fontsize=9)
        fig.tight_layout()
        fig.savefig(workdir / f"attention_{kind}.png")
        plt.close(fig)

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4), dpi=100)
    for kind, res in models.items():
        rows = res["greedy_by_length"]
        mid = [(r["lo"] + r["hi"]) / 2 for r in rows]
        for ax, metric in zip(axes, ("bleu", "exact")):
            ax.plot(mid, [r[metric] for r in rows], marker="o", label=kind)
            ax.set_ylabel({"bleu": "BLEU (greedy)", "exact": "exact match % (greedy)"}[metric])
    axis = next(iter(models.values()))["length_axis"]
    for ax in axes:
        ax.set_xlabel(f"{'reference' if axis == 'target' else 'source'} length (tokens)")
        ax.legend(frameon=False)
    fig.tight_layout()
    fig.savefig(workdir / "by_length.png")
    plt.close(fig)

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.2), dpi=100)
    for kind in models:
        records = writers.read_metrics(workdir / kind)
        steps = [r["step"] for r in records]
        axes[0].plot(steps, [r["loss"] for r in records], label=f"{kind} train", lw=1)
        axes[0].plot(steps, [r["eval_loss"] for r in records], ls="--", label=f"{kind} test")
        axes[1].plot(steps, [100 * r["eval_exact"] for r in records], label=kind)
    axes[0].set_yscale("log")
    axes[0].set_ylabel("token cross-entropy")
    axes[1].set_ylabel("exact match % (test sample, greedy)")
    for ax in axes:
        ax.set_xlabel("step")
        ax.legend(frameon=False, fontsize=7)
    fig.tight_layout()
    fig.savefig(workdir / "learning_curves.png")
    plt.close(fig)


# --- report ------------------------------------------------------------------------------------


def report(workdir: str) -> str:
    """The markdown section: ours beside the published numbers; figure paths relative to the
    parent of ``workdir`` (as experiments.reproduce writes report.md there)."""
    workdir = Path(workdir)
    lines = ["## Translation: encoder-decoders with and without attention", ""]
    path = workdir / "results.json"
    if not path.exists():
        return "\n".join(lines + ["(no results yet)", ""])
    res = json.loads(path.read_text())
    lines += [
        f"Dataset `{res['dataset']}`: {res.get('num_test', '?')} test pairs, exact match and "
        "sacrebleu corpus BLEU (%); by_length.png bins them by the "
        f"{'reference (actions)' if res.get('length_axis') == 'target' else 'source'} length.",
        "",
        "| model | steps | exact (greedy) | exact (beam) | BLEU (greedy) | BLEU (beam) |",
        "|---|---|---|---|---|---|",
    ]
    for kind, m in res["models"].items():
        g, b = m["greedy"], m["beam"]
        lines.append(f"| {kind} | {m['steps']} | {g['exact']:.1f} | {b['exact']:.1f} | "
                     f"{g['bleu']:.1f} | {b['bleu']:.1f} |")  # fmt: skip
    lines += ["", f"Published: {res['published'] or '(no published figure for this data set)'}. "
              f"{res['context']}", ""]  # fmt: skip
    rel = lambda name: (workdir / name).relative_to(workdir.parent)  # noqa: E731
    for name in ["by_length.png", "learning_curves.png", *sorted(
            p.name for p in workdir.glob("attention_*.png"))]:  # fmt: skip
        if (workdir / name).exists():
            lines.append(f"![{name[:-4]}]({rel(name)})")
    return "\n".join(lines) + "\n"
