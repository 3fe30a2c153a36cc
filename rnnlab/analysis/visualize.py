"""Text coloured by a unit's activation, as HTML and PNG (Karpathy, Johnson & Fei-Fei 2015).

Each character is drawn on a background that goes linearly from red at -1 through white at 0
to blue at +1, by the activation v of one unit after reading that character (tanh(c) for an
LSTM cell, or h), clipped to [-1, 1]:

    v < 0:  (r, g, b) = (255, 255 (1 + v), 255 (1 + v))        red
    v > 0:  (r, g, b) = (255 (1 - v), 255 (1 - v), 255)        blue

HTML: one <span> per character (newlines and spaces included, so the text is exactly
recoverable), HTML-escaped, with the value in its title attribute (shown on hover), inside a
``white-space: pre-wrap`` block so newlines are kept. PNG: the same through matplotlib (Agg),
the text laid out on a grid of lines and columns, one coloured cell per character.
"""

from __future__ import annotations

import html
import os
from collections.abc import Mapping

import numpy as np

FONT = "font-family: monospace; font-size: 13px; line-height: 1.4"


def colour(value: float) -> tuple[int, int, int]:
    """(r, g, b) in 0..255 for an activation: red at -1, white at 0, blue at +1."""
    v = float(np.clip(value, -1.0, 1.0))
    if v < 0:
        fade = round(255 * (1 + v))
        return 255, fade, fade
    fade = round(255 * (1 - v))
    return fade, fade, 255


def _check(text: str, values) -> np.ndarray:
    values = np.asarray(values, np.float64).reshape(-1)
    if values.shape[0] != len(text):
        raise ValueError(f"values: expected one per character ({len(text)}), got {values.shape[0]}")
    return values


def spans(text: str, values) -> str:
    """The characters as <span>s, one each, coloured by ``values`` ([N], one per character)."""
    values = _check(text, values)
    out = []
    for ch, v in zip(text, values.tolist()):
        r, g, b = colour(v)
        out.append(
            f'<span style="background-color:#{r:02x}{g:02x}{b:02x}" title="{v:+.3f}">'
            f"{html.escape(ch)}</span>"
        )
    return "".join(out)


def html_block(text: str, values, label: str = "") -> str:
    """One unit's coloured text as a <div> (with an optional heading)."""
    heading = f"<h3>{html.escape(label)}</h3>\n" if label else ""
    return (
        f'{heading}<div class="text" style="white-space: pre-wrap; {FONT}">'
        f"{spans(text, values)}</div>"
    )


def html_page(text: str, units: Mapping[str, np.ndarray], title: str = "Hidden units") -> str:
    """A standalone HTML page: the same text once per unit, coloured by that unit.

    Args:
        text: N characters.
        units: label (e.g. "layer 0, unit 17, tanh(c), r = +0.81 with in_quote") -> [N] values.
        title: the page title.
    """
    legend = "".join(spans("-1 0 +1", [-1, -1, 0, 0, 0, 1, 1]))
    blocks = "\n".join(html_block(text, values, label) for label, values in units.items())
    return (
        '<!DOCTYPE html>\n<html><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title></head>\n<body>\n"
        f"<h2>{html.escape(title)}</h2>\n"
        f"<p>Background: the activation after reading each character, red (-1), white (0), "
        f'blue (+1). <span style="{FONT}">{legend}</span></p>\n'
        f"{blocks}\n</body></html>\n"
    )


def write_html(
    path: str | os.PathLike, text: str, units: Mapping[str, np.ndarray], title: str = "Hidden units"
) -> str:
    """Writes ``html_page`` to ``path`` (UTF-8) and returns the path."""
    with open(path, "w", encoding="utf-8") as f:
        f.write(html_page(text, units, title))
    return os.fspath(path)


def layout(text: str, columns: int = 100) -> list[tuple[int, int]]:
    """(row, column) of every character: a newline ends its row, long lines wrap at ``columns``."""
    cells, row, col = [], 0, 0
    for ch in text:
        if col >= columns:
            row, col = row + 1, 0
        cells.append((row, col))
        if ch == "\n":
            row, col = row + 1, 0
        else:
            col += 1
    return cells


def write_png(
    path: str | os.PathLike,
    text: str,
    values,
    *,
    columns: int = 100,
    title: str = "",
    dpi: int = 100,
) -> str:
    """The coloured text as a PNG: one cell per character on a grid of lines.

    Args:
        path: where to write.
        text, values: N characters and [N] activations.
        columns: wrap lines longer than this.
        title: drawn above the text.
        dpi: resolution.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    values = _check(text, values)
    cells = layout(text, columns)
    rows = (cells[-1][0] + 1) if cells else 1
    image = np.ones((rows, columns, 3))  # white where there is no character
    for (r, c), v in zip(cells, values.tolist()):
        image[r, c] = np.array(colour(v)) / 255.0
    fig = plt.figure(figsize=(columns * 0.11 + 0.4, rows * 0.2 + 0.6), dpi=dpi)
    ax = fig.add_axes([0.01, 0.01, 0.98, 1.0 - 0.4 / (rows * 0.2 + 0.6)])
    ax.imshow(image, aspect="auto", interpolation="nearest", extent=(0, columns, rows, 0))
    for (r, c), ch in zip(cells, text):
        if not ch.isspace():
            ax.text(c + 0.5, r + 0.55, ch, ha="center", va="center", family="monospace", size=8)
    ax.set_axis_off()
    if title:
        fig.suptitle(title, fontsize=9, y=0.995, va="top")
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return os.fspath(path)
