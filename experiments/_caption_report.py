"""What a caption run shows its reader, for experiments.caption: the figures (sample captions
under their test images, each word's attention over the image, the learning curves of the
decoders) and the run's section of the demo report."""

from __future__ import annotations

import json
import math
import textwrap
from pathlib import Path

import numpy as np

from experiments._caption_data import Data
from rnnlab.data import scenes
from rnnlab.train import writers

# --- figures -------------------------------------------------------------------------------------


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_samples(run_dir: Path, config, data: Data, predictions: dict) -> Path:
    """samples.png: test images with a reference and the greedy and beam captions (scenes: green
    when true of the image, red when not)."""
    plt = _plt()
    n = min(config.num_samples, len(data.test.images))
    cols = min(n, 4)
    rows = -(-n // cols)
    fig = plt.figure(figsize=(3.4 * cols, 4.6 * rows), dpi=100)
    grid = fig.add_gridspec(2 * rows, cols, height_ratios=[3, 1.6] * rows)  # image, then text
    for i in range(n):
        r, c = divmod(i, cols)
        ax, text_ax = fig.add_subplot(grid[2 * r, c]), fig.add_subplot(grid[2 * r + 1, c])
        ax.imshow(data.test.images[i], interpolation="nearest")
        ax.axis("off")
        text_ax.axis("off")
        lines = [("ref", data.test.references[i][0], "black")]
        for kind in ("greedy", "beam"):
            text = predictions[kind][i]
            colour = "black"
            if data.test.objects is not None:
                colour = "green" if scenes.is_true(text, data.test.objects[i]) else "red"
            lines.append((kind, text, colour))
        y = 1.0
        for label, text, colour in lines:
            wrapped = textwrap.fill(f"{label}: {text}", 44)
            text_ax.text(0, y, wrapped, va="top", fontsize=7, color=colour)
            y -= 0.16 * (wrapped.count("\n") + 1) + 0.04
    fig.suptitle(f"{run_dir.name}: test images (ref, greedy, beam {config.beam_size})")
    fig.tight_layout()
    path = run_dir / "samples.png"
    fig.savefig(path)
    plt.close(fig)
    return path


def _upsample(weights: np.ndarray, size: int) -> np.ndarray:
    """A [L] grid of attention weights (row-major, square) as a smooth [size, size] map."""
    from PIL import Image

    side = int(round(math.sqrt(weights.shape[-1])))
    grid = weights.reshape(side, side).astype(np.float32)
    return np.asarray(Image.fromarray(grid, mode="F").resize((size, size), Image.BICUBIC))


def plot_attention(run_dir: Path, config, data: Data, predictions: dict) -> list[Path]:
    """attention_<k>.png: the image, then each greedy word over the image lit by its attention
    weights (upsampled bicubically from the grid), as Xu et al. (2015), figure 3."""
    plt = _plt()
    paths = []
    for k in range(min(config.num_attention, len(data.test.images))):
        image = data.test.images[k].astype(np.float32) / 255.0
        steps = predictions["weights"][k]  # [max_len, L]: one row per decoded token
        words = scenes.tokenize(predictions["greedy"][k])
        if len(words) < len(steps):  # it ended with <eos>; at max_len it was cut off instead
            words.append("<eos>")
        weights = steps[: len(words)]  # [n, L]
        cols = min(len(words) + 1, 8)
        rows = -(-(len(words) + 1) // cols)
        fig, axes = plt.subplots(rows, cols, figsize=(1.6 * cols, 1.8 * rows), dpi=100,
                                 squeeze=False)  # fmt: skip
        for ax in axes.flat:
            ax.axis("off")
        axes.flat[0].imshow(image)
        axes.flat[0].set_title("image", fontsize=8)
        for t, (word, ax) in enumerate(zip(words, list(axes.flat)[1:])):
            heat = _upsample(weights[t], image.shape[0])
            heat = np.clip(heat / max(heat.max(), 1e-8), 0, 1)[..., None]
            ax.imshow(image * (0.2 + 0.8 * heat))
            ax.set_title(word, fontsize=9)
        fig.suptitle(textwrap.fill(predictions["greedy"][k], 90), fontsize=8)
        fig.tight_layout()
        path = run_dir / f"attention_{k}.png"
        fig.savefig(path)
        plt.close(fig)
        paths.append(path)
    return paths


def plot_curves(workdir: Path, decoders: list[str]) -> Path:
    """learning_curves.png: train loss and valid NLL of every decoder against the step."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.5, 3.4), dpi=100)
    for i, decoder in enumerate(decoders):
        records = writers.read_metrics(workdir / decoder)
        steps = [r["step"] for r in records]
        ax.plot(steps, [r["nll"] for r in records], color=f"C{i}", lw=1, alpha=0.5)
        ax.plot(steps, [r.get("eval_nll", np.nan) for r in records], color=f"C{i}", lw=1.8,
                label=f"{decoder} (valid)")  # fmt: skip
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("NLL per word (thin: train)")
    ax.legend(frameon=False, fontsize=8)
    fig.tight_layout()
    path = workdir / "learning_curves.png"
    fig.savefig(path)
    plt.close(fig)
    return path


# --- report --------------------------------------------------------------------------------------


def report(workdir: str) -> str:
    """The markdown section for runs/…/report.md; figure paths are relative to its parent."""
    workdir = Path(workdir)
    res = json.loads((workdir / "results.json").read_text())
    rel = lambda p: p.relative_to(workdir.parent)  # noqa: E731
    lines = [
        "## Image captioning",
        "",
        f"Data {res['dataset']} at {res['image_size']}px; encoder {res['encoder']['name']} "
        f"{tuple(res['encoder']['channels'])}; {res['cell']} decoders, {res['steps']} steps each. "
        "Decoders: inject (Karpathy & Fei-Fei 2015; Mao et al. 2015), show_and_tell (Vinyals et "
        "al. 2015), show_attend_tell (soft attention, Xu et al. 2015). BLEU and CIDEr-D x 100: "
        f"{res['metrics']['bleu']}; {res['metrics']['cider_d']}; text tokenised in Python. "
        "'true': captions true of their scene. On the scenes, valid holds seen colour-shape "
        "pairs, test held-out ones.",
        "",
        "| decoder | split | decoding | BLEU-1 | BLEU-2 | BLEU-3 | BLEU-4 | CIDEr-D | true |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for decoder, one in res["decoders"].items():
        for split in ("valid", "test"):
            for kind in ("greedy", "beam"):
                s = one["scores"][split][kind]
                true = f"{s['true']:.2f}" if "true" in s else "-"
                lines.append(
                    f"| {decoder} | {split} | {kind} | "
                    + " | ".join(f"{100 * s[f'bleu{n}']:.1f}" for n in range(1, 5))
                    + f" | {100 * s['cider_d']:.1f} | {true} |"
                )
    lines += ["", "Published BLEU-4, for context only (COCO, ImageNet-pretrained encoders):"]
    lines += [f"{p['what']}: {p['bleu4']}." for p in res["published_bleu4"].values()]
    lines.append("")
    if (workdir / "learning_curves.png").exists():
        lines.append(f"![learning curves]({rel(workdir / 'learning_curves.png')})")
    for decoder in res["decoders"]:
        for fig in [
            workdir / decoder / "samples.png",
            *sorted((workdir / decoder).glob("att*.png")),
        ]:
            if fig.exists():
                lines.append(f"![{decoder} {fig.stem}]({rel(fig)})")
    return "\n".join(lines) + "\n"
