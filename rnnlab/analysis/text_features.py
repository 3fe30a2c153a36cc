"""Simple per-character text features, and units ranked by their correlation with them.

Karpathy, Johnson & Fei-Fei (2015), "Visualizing and understanding recurrent networks", found
LSTM cells that track whether the text is inside a quote, the position in the line, and the
depth of nested brackets (in the Linux kernel source). Here each such feature is a number per
character, f_t, and each unit u is scored by the Pearson correlation over the text

    r_u = sum_t (a_ut - mean_u)(f_t - mean_f) / sqrt(sum_t (a_ut - mean_u)^2 sum_t (f_t - mean_f)^2)

with a_ut the unit's activation after reading character t (tanh(c) or h). Units are ranked by
|r_u|; a unit or a feature that is constant over the text scores 0.

Features (``features(text, language)``), one float per character:
    in_quote       1 for the characters of a string literal, both quote marks included
    in_comment     1 from "#" to the end of the line (Python only; the newline is outside)
    bracket_depth  how many ( [ { enclose the character, a bracket counting as inside its pair;
                   brackets in strings and comments do not count
    line_position  the character's column: 0 for the first character of a line; a newline is
                   the last character of its line

Language "python" knows ' and " strings (triple-quoted ones span lines; backslash escapes; an
unterminated single-quoted string ends at the newline) and # comments. "prose" knows only
double quotes (straight or curly, across lines), so apostrophes do not open quotes.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

import numpy as np

LANGUAGES = ("python", "prose")
FEATURES = ("in_quote", "in_comment", "bracket_depth", "line_position")
_OPEN, _CLOSE = "([{", ")]}"


def _python(text: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(in_quote, in_comment, bracket_depth) for Python source, by a small scanner."""
    n = len(text)
    quote, comment, depth = np.zeros(n), np.zeros(n), np.zeros(n)
    i, level = 0, 0
    while i < n:
        ch = text[i]
        if ch == "#":
            end = text.find("\n", i)
            end = n if end < 0 else end
            comment[i:end] = 1
            depth[i:end] = level
            i = end
            continue
        if ch in "'\"":
            delim = ch * 3 if text.startswith(ch * 3, i) else ch
            j = i + len(delim)
            while j < n:
                if text[j] == "\\":
                    j += 2
                elif text.startswith(delim, j):
                    j += len(delim)
                    break
                elif text[j] == "\n" and len(delim) == 1:
                    break  # an unterminated one-line string ends at the newline
                else:
                    j += 1
            j = min(j, n)
            quote[i:j] = 1
            depth[i:j] = level
            i = j
            continue
        if ch in _OPEN:
            level += 1
            depth[i] = level
        elif ch in _CLOSE:
            depth[i] = level
            level = max(level - 1, 0)
        else:
            depth[i] = level
        i += 1
    return quote, comment, depth


def _prose(text: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(in_quote, in_comment = 0, bracket_depth) for prose: double quotes only."""
    n = len(text)
    quote, depth = np.zeros(n), np.zeros(n)
    inside, level = False, 0
    for i, ch in enumerate(text):
        if ch == "\u201c" or (ch == '"' and not inside):
            inside = True
            quote[i] = 1
            continue
        if ch == "\u201d" or (ch == '"' and inside):
            quote[i] = 1
            inside = False
            continue
        quote[i] = inside
        if ch in _OPEN:
            level += 1
            depth[i] = level
        elif ch in _CLOSE:
            depth[i] = level
            level = max(level - 1, 0)
        else:
            depth[i] = level
    return quote, np.zeros(n), depth


def line_position(text: str) -> np.ndarray:
    """[N] the column of every character (0 at the start of each line)."""
    codes = np.frombuffer(text.encode("utf-32-le"), np.uint32)
    index = np.arange(codes.size)
    newline = codes == ord("\n")
    # The index where the current line starts: one past the last newline before t.
    starts = np.maximum.accumulate(np.where(np.concatenate([[True], newline[:-1]]), index, 0))
    return (index - starts).astype(np.float64)


def features(text: str, language: str = "python") -> dict[str, np.ndarray]:
    """The features of the module docstring, each [N] float64 for ``text`` of N characters."""
    if language not in LANGUAGES:
        raise ValueError(f"language={language!r}: expected one of {list(LANGUAGES)}")
    quote, comment, depth = (_python if language == "python" else _prose)(text)
    return {
        "in_quote": quote,
        "in_comment": comment,
        "bracket_depth": depth,
        "line_position": line_position(text),
    }


# --- ranking units ---------------------------------------------------------------------------


class UnitScore(NamedTuple):
    """A unit and its correlation with one feature."""

    unit: int
    correlation: float


def correlations(activations, feature) -> np.ndarray:
    """[U] Pearson r of every unit with the feature; 0 where either is constant.

    Args:
        activations: [N, U] one row per character.
        feature: [N].
    """
    a = np.asarray(activations, np.float64)
    f = np.asarray(feature, np.float64)
    if a.ndim != 2 or f.shape != (a.shape[0],):
        raise ValueError(f"activations [N, U] and feature [N]: got shapes {a.shape} and {f.shape}")
    a = a - a.mean(axis=0)
    f = f - f.mean()
    denominator = np.sqrt((a * a).sum(axis=0) * (f * f).sum())  # [U]
    numerator = f @ a  # [U]
    safe = denominator > 1e-12 * max(1.0, float(denominator.max(initial=0.0)))
    return np.where(safe, numerator / np.where(safe, denominator, 1.0), 0.0)


def rank_units(
    activations, feature_values: Mapping[str, np.ndarray], top: int = 5
) -> dict[str, list[UnitScore]]:
    """The ``top`` units per feature by |correlation|, strongest first.

    Args:
        activations: [N, U], e.g. tanh(c) of one layer after each character.
        feature_values: name -> [N], e.g. ``features(text)``.
        top: how many units per feature.

    Returns:
        name -> [UnitScore(unit, r), ...] sorted by |r| descending (ties by unit index).
    """
    ranked = {}
    for name, values in feature_values.items():
        r = correlations(activations, values)
        order = np.lexsort((np.arange(r.size), -np.abs(r)))[:top]
        ranked[name] = [UnitScore(int(u), float(r[u])) for u in order]
    return ranked
