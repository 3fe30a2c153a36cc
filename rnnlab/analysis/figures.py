"""PNG figures of the studies (matplotlib, Agg backend; no display needed).

    learning_curve  a training metric and its eval against the step, with a reference line

    lag_curves   ||dL/dh_t|| against lag, one panel per cell, one line per recurrent scale
    rates        fitted per-step rate against log(rho), with the theory
    wall         Pascanu (2013, fig. 6): the one-unit loss surface, its wall and GD trajectories
    cec          the LSTM's constant error carousel: dL/dc_t, the cell-state path alone, dL/dh_t
    success_vs_length  Pascanu (2013, fig. 7): solved fraction against L per init x method
    grad_norm_traces   ||dE/dtheta|| during training per init x method, spikes marked

Every function takes plain numpy values and a path, writes one PNG and returns the path.
"""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def _grid(n: int, ncols: int = 4, size: float = 3.4):
    ncols = min(ncols, n)
    nrows = math.ceil(n / ncols)
    fig, axes = plt.subplots(
        nrows, ncols, figsize=(size * ncols, size * 0.85 * nrows), squeeze=False
    )
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    return fig, list(axes.flat[:n])


def _save(fig, path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def learning_curve(
    path,
    records: list[dict],
    train_key: str,
    eval_key: str,
    *,
    reference: float,
    labels: tuple[str, str, str],
    ylabel: str,
    title: str,
    log_y: bool = False,
) -> Path:
    """Train and eval curves from metrics.jsonl records, with a horizontal reference line.

    Args:
        records: ``writers.read_metrics`` rows; a row without ``eval_key`` leaves a gap.
        labels: the legend entries of the train curve, the eval curve and the reference.
        log_y: a log y-axis; otherwise it starts at 0.
    """
    steps = [r["step"] for r in records]
    fig, ax = plt.subplots(figsize=(5, 3.2))
    ax.plot(steps, [r[train_key] for r in records], label=labels[0], lw=1, alpha=0.6)
    ax.plot(steps, [r.get(eval_key, np.nan) for r in records], label=labels[1], lw=1.5)
    ax.axhline(reference, color="gray", ls="--", lw=1, label=labels[2])
    if log_y:
        ax.set_yscale("log")
    else:
        ax.set_ylim(bottom=0)
    ax.set_xlabel("step")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(frameon=False)
    return _save(fig, path)


def lag_curves(path, lags, curves: dict, theory: dict | None = None, title: str = "") -> Path:
    """One panel per cell: log||dL/dh_{T-k}|| (natural log) against lag k, a line per radius.

    Args:
        lags: [T].
        curves: cell label -> {radius label -> [T] mean log-norm}.
        theory: cell label -> {radius label -> (kind, rate)}; kind "equal" is drawn as
            k * rate, kind "bound" as the line of slope ``rate`` through the lag-1 value.
    """
    fig, axes = _grid(len(curves))
    for ax, (label, by_radius) in zip(axes, curves.items(), strict=True):
        colors = plt.cm.viridis(np.linspace(0.0, 0.9, max(len(by_radius), 1)))
        for color, (radius, y) in zip(colors, by_radius.items(), strict=True):
            ax.plot(lags, y, color=color, lw=1.6, label=f"rho={radius}")
            kind, rate = (theory or {}).get(label, {}).get(radius, (None, None))
            if kind == "equal":
                ax.plot(lags, lags * rate, color="k", ls=":", lw=1.0)
            elif kind == "bound" and np.isfinite(y[0]):
                ax.plot(lags, y[0] + (lags - lags[0]) * rate, color=color, ls="--", lw=0.9)
        ax.set_title(label)
        ax.set_xlabel("lag k = T - t (steps)")
        ax.set_ylabel("log ||dL/dh_t|| (nats)")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    fig.suptitle(
        title
        or "Gradient norm against lag at initialisation "
        "(dotted: rho^k exactly; dashed: bound, slope log sigma_max(W))",
        fontsize=10,
        y=1.02,
    )
    return _save(fig, path)


def rates(path, rows: list[dict]) -> Path:
    """Fitted rate against log(rho): rows of {"cell", "radius", "slope", "theory"}."""
    fig, ax = plt.subplots(figsize=(6.4, 4.6))
    cells = list(dict.fromkeys(r["cell"] for r in rows))
    markers = "osD^v<>phx*"
    all_x = []
    for i, cell in enumerate(cells):
        rs = [r for r in rows if r["cell"] == cell and r["radius"] is not None]
        x = np.log([r["radius"] for r in rs])
        all_x.extend(x)
        ax.plot(x, [r["slope"] for r in rs], marker=markers[i % len(markers)], lw=1, label=cell)
    if all_x:
        lo, hi = min(all_x), max(all_x)
        ax.plot([lo, hi], [lo, hi], "k:", lw=1, label="log(rho) (linear theory)")
    ax.axhline(0.0, color="grey", lw=0.6)
    ax.set_xlabel("log(rho), rho = spectral radius of W_h")
    ax.set_ylabel("fitted rate d log||dL/dh|| / d lag (nats/step)")
    ax.set_title("Per-step growth rate of the gradient at initialisation")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return _save(fig, path)


def wall(path, surface, walls, trajectories: dict, wall_line=None) -> Path:
    """The one-unit loss surface with the wall and GD trajectories (Pascanu 2013, fig. 6).

    Args:
        surface: a ``pascanu_wall.Surface``.
        walls: found walls, (w, b) pairs.
        trajectories: label -> list of ``Trajectory`` (e.g. "no clipping", "clip at 1").
        wall_line: (ws, bs) of the theoretical wall b = x_0 - w sigma(x_0), or None.
    """
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(12, 4.8), gridspec_kw={"width_ratios": [1.3, 1]})
    mesh = ax.pcolormesh(surface.ws, surface.bs, surface.loss, shading="auto", cmap="magma")
    fig.colorbar(mesh, ax=ax, label="E(w, b) = (sigma(x_50) - 0.7)^2")
    if wall_line is not None:
        ax.plot(*wall_line, color="white", ls="--", lw=1.2, label="theory: b = 0.5 - w sigma(0.5)")
    ax.plot([w for w, _ in walls], [b for _, b in walls], "w^", ms=7, mec="k", label="wall found")
    styles = {0: ("#1fa0ff", "-"), 1: ("#33dd33", "-")}
    w_lo, w_hi, b_lo, b_hi = surface.ws[0], surface.ws[-1], surface.bs[0], surface.bs[-1]
    for i, (label, trajs) in enumerate(trajectories.items()):
        color, ls = styles.get(i, ("yellow", "-"))
        for j, t in enumerate(trajs):
            p = t.points
            ax.plot(
                p[:, 0],
                p[:, 1],
                color=color,
                ls=ls,
                lw=1.2,
                marker=".",
                ms=3,
                label=label if j == 0 else None,
            )
            ax.plot(*p[0], "o", color=color, ms=5, mec="k")
            end = p[-1]
            if not (w_lo <= end[0] <= w_hi and b_lo <= end[1] <= b_hi):
                ax.annotate(
                    f"-> ({end[0]:.1f}, {end[1]:.1f})",
                    xy=(np.clip(end[0], w_lo, w_hi), np.clip(end[1], b_lo, b_hi)),
                    color=color,
                    fontsize=7,
                )
            ax2.semilogy(
                t.grad_norm, color=color, lw=1.0, alpha=0.8, label=label if j == 0 else None
            )
    ax.set_xlim(w_lo, w_hi)
    ax.set_ylim(b_lo, b_hi)
    ax.set_xlabel("w (recurrent weight)")
    ax.set_ylabel("b (bias)")
    ax.set_title("One-unit RNN, x_t = w sigma(x_{t-1}) + b, 50 steps")
    ax.legend(fontsize=7, loc="lower left")
    ax2.set_xlabel("gradient-descent step")
    ax2.set_ylabel("||grad E|| (log scale)")
    ax2.set_title("Gradient norm along the trajectories")
    ax2.grid(alpha=0.3)
    ax2.legend(fontsize=7)
    return _save(fig, path)


def cec(path, lags, panels: dict, reference: dict | None = None) -> Path:
    """The constant error carousel: one panel per LSTM.

    Args:
        panels: label -> {curve label -> [T] mean log-norm}, e.g. "dL/dc_t", "dL/dc_t, cell
            path only", "dL/dh_t".
        reference: label -> (line label, rate): a dashed line of that slope from the first
            curve's lag-1 value (e.g. log sigmoid(b_f)).
    """
    fig, axes = _grid(len(panels), ncols=len(panels), size=4.0)
    for ax, (label, curves) in zip(axes, panels.items(), strict=True):
        first = None
        for name, y in curves.items():
            ax.plot(lags, y, lw=1.5, label=name)
            first = y if first is None else first
        if reference and label in reference and first is not None:
            name, rate = reference[label]
            ax.plot(lags, first[0] + (lags - lags[0]) * rate, "k--", lw=0.9, label=name)
        ax.set_title(label)
        ax.set_xlabel("lag k = T - t (steps)")
        ax.set_ylabel("log-norm of the gradient (nats)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    fig.suptitle(
        "Constant error carousel: the cell-state path is multiplied by f, not by W_h",
        fontsize=10,
        y=1.03,
    )
    return _save(fig, path)


_METHOD_STYLE = {"none": ("-", "o"), "clip": ("--", "s"), "clip_omega": (":", "^")}


def success_vs_length(path, rows: list[dict]) -> Path:
    """Solved fraction against length, one panel per task (Pascanu 2013, fig. 7).

    Args:
        rows: {"task", "seq_len", "init", "method", "solved", "seeds"} per grid cell (as
            ``pascanu_training.success_table``). Colour: init; line and marker: method.
    """
    task_names = list(dict.fromkeys(r["task"] for r in rows))
    fig, axes = _grid(len(task_names), ncols=2, size=5.0)
    inits = list(dict.fromkeys(r["init"] for r in rows))
    methods = list(dict.fromkeys(r["method"] for r in rows))
    colors = dict(zip(inits, plt.cm.tab10(np.arange(len(inits))), strict=True))
    for ax, task in zip(axes, task_names, strict=True):
        lengths = sorted({r["seq_len"] for r in rows if r["task"] == task})
        for j, (init, method) in enumerate((i, m) for i in inits for m in methods):
            cell = {r["seq_len"]: r for r in rows if r["task"] == task and r["init"] == init
                    and r["method"] == method}  # fmt: skip
            x = np.array([L for L in lengths if L in cell], float)
            y = [cell[L]["solved"] / cell[L]["seeds"] for L in x.astype(int)]
            ls, marker = _METHOD_STYLE.get(method, ("-", "d"))
            jitter = 1.0 + 0.012 * (j - (len(inits) * len(methods) - 1) / 2)  # overlaps visible
            ax.plot(x * jitter, y, ls=ls, marker=marker, color=colors[init], lw=1.4, ms=6,
                    label=f"{init}, {method}")  # fmt: skip
        ax.set_xscale("log")
        ax.set_xticks(lengths, [str(L) for L in lengths])
        ax.minorticks_off()
        ax.set_ylim(-0.05, 1.05)
        ax.set_xlabel("sequence length L")
        ax.set_ylabel("success rate (test error < 1%)")
        ax.set_title(task)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7, ncol=len(inits), loc="upper center", bbox_to_anchor=(0.5, -0.16))
    fig.tight_layout()
    fig.suptitle("Success rate against length (cf. Pascanu, Mikolov & Bengio 2013, fig. 7)",
                 fontsize=10, y=1.02)  # fmt: skip
    return _save(fig, path)


def grad_norm_traces(path, panels: dict, title: str = "") -> Path:
    """||dE/dtheta|| during training: one panel per init, one colour per method.

    Args:
        panels: panel label -> {method -> trace}, a trace as ``pascanu_training.traces`` gives
            it: "steps", "grad_norm_max", "grad_norm_median" (per chunk) and "spikes"
            [(step, ratio)], marked at the chunk maximum of the step's chunk.
    """
    fig, axes = _grid(len(panels), ncols=len(panels), size=4.2)
    colors = {"none": "C3", "clip": "C0", "clip_omega": "C2"}
    for ax, (label, by_method) in zip(axes, panels.items(), strict=True):
        for method, t in by_method.items():
            steps = np.asarray(t["steps"], float)
            if steps.size == 0:
                continue
            c = colors.get(method, "k")
            ax.semilogy(steps, t["grad_norm_max"], color=c, lw=1.0, label=f"{method}: chunk max")
            ax.semilogy(steps, t["grad_norm_median"], color=c, lw=0.8, ls=":", alpha=0.8)
            for s, ratio in t["spikes"]:
                i = min(int(np.searchsorted(steps, s)), steps.size - 1)
                ax.plot(s, t["grad_norm_max"][i], "x", color=c, ms=7, mew=1.6)
                if ratio > 50:
                    ax.annotate(f"{ratio:.0f}x", (s, t["grad_norm_max"][i]), fontsize=6, color=c)
        ax.set_title(label)
        ax.set_xlabel("SGD step")
        ax.set_ylabel("||dE/dtheta|| per chunk (solid: max, dotted: median)", fontsize=8)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    fig.suptitle(title or "Gradient norm during training; x: spike (> 10x running median)",
                 fontsize=10, y=1.03)  # fmt: skip
    return _save(fig, path)
