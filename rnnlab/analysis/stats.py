"""Small-sample statistics for comparing training runs over seeds, in numpy.

    steps = first_crossing(steps, curves, threshold)      # [seeds], inf where never crossed
    p = mann_whitney(steps_a, steps_b)                     # exact two-sided permutation p
    p = fisher_exact(solved_a, n_a, solved_b, n_b)         # two-sided, on solved counts

With k seeds per setting only large effects can be significant: the smallest two-sided p of a
Mann-Whitney test with 5 against 5 is 2 / C(10, 5) = 0.0079, with 3 against 3 it is 0.1. A
setting whose runs never met the criterion has steps-to-solve +inf; ranks treat those as ties
at the top, so the same test compares "how fast" and "whether at all".

Mann-Whitney U (Mann & Whitney 1947), with midranks for ties:
    U = sum of the ranks of a in the pooled sample - n_a (n_a + 1) / 2
    p = P(|U' - n_a n_b / 2| >= |U - n_a n_b / 2|) over all C(n_a + n_b, n_a) relabellings
        (exact when that count is at most ``exact_limit``, else ``samples`` random ones).
The test ignores any pairing of seeds; when paired runs are positively correlated (same init and
data) it is conservative.

Fisher's exact test (Fisher 1922): the hypergeometric probability of each table with the
observed margins; p sums those no more likely than the observed one.
"""

from __future__ import annotations

import itertools
import math

import numpy as np


def first_crossing(steps, curves, threshold: float) -> np.ndarray:
    """The first step at which each curve is below ``threshold``; inf if it never is.

    Args:
        steps: [L] the logged steps, increasing.
        curves: [K, L] one curve per run (e.g. per seed).
        threshold: the criterion, strictly below.

    Returns:
        [K] float array of steps (inf where the curve never went below).
    """
    steps = np.asarray(steps, float)
    curves = np.atleast_2d(np.asarray(curves, float))
    if curves.shape[-1] != steps.shape[0]:
        raise ValueError(f"curves: expected [K, {steps.shape[0]}], got {curves.shape}")
    below = curves < threshold  # NaN compares False: a diverged run never counts as solved
    return np.where(below.any(axis=1), steps[np.argmax(below, axis=1)], np.inf)


def rankdata(x) -> np.ndarray:
    """1-based ranks with ties given their mean rank (midranks); inf ties like any value."""
    x = np.asarray(x, float)
    order = np.argsort(x, kind="stable")
    ranks = np.empty(len(x))
    ranks[order] = np.arange(1, len(x) + 1)
    for value in np.unique(x):
        tied = x == value
        ranks[tied] = ranks[tied].mean()
    return ranks


def mann_whitney(a, b, *, exact_limit: int = 20_000, samples: int = 20_000, seed: int = 0):
    """Two-sided permutation p-value of the Mann-Whitney U statistic; see the module docstring.

    Args:
        a, b: 1-d samples (inf allowed, e.g. never solved); NaN is refused.
        exact_limit: enumerate every relabelling when there are at most this many.
        samples, seed: the Monte Carlo relabellings otherwise.

    Returns:
        p in (0, 1]; 1.0 when either sample is empty.
    """
    a, b = np.asarray(a, float).ravel(), np.asarray(b, float).ravel()
    if np.isnan(a).any() or np.isnan(b).any():
        raise ValueError("mann_whitney: NaN in the samples (use inf for 'never')")
    n_a, n = len(a), len(a) + len(b)
    if n_a == 0 or len(b) == 0:
        return 1.0
    ranks = rankdata(np.concatenate([a, b]))
    centre = n_a * (n - n_a) / 2.0
    observed = abs(ranks[:n_a].sum() - n_a * (n_a + 1) / 2.0 - centre)
    if math.comb(n, n_a) <= exact_limit:
        picks = np.array(list(itertools.combinations(range(n), n_a)))  # [C, n_a]
    else:
        rng = np.random.default_rng(seed)
        picks = np.argsort(rng.random((samples, n)), axis=1)[:, :n_a]
    u = np.abs(ranks[picks].sum(axis=1) - n_a * (n_a + 1) / 2.0 - centre)
    return float(np.mean(u >= observed - 1e-9))


def fisher_exact(solved_a: int, n_a: int, solved_b: int, n_b: int) -> float:
    """Two-sided Fisher exact p for solved counts solved_a / n_a against solved_b / n_b."""
    if not (0 <= solved_a <= n_a and 0 <= solved_b <= n_b):
        raise ValueError(f"fisher_exact: counts {solved_a}/{n_a}, {solved_b}/{n_b} out of range")
    total, solved = n_a + n_b, solved_a + solved_b

    def prob(k):
        return math.comb(n_a, k) * math.comb(n_b, solved - k) / math.comb(total, solved)

    lo, hi = max(0, solved - n_b), min(n_a, solved)
    observed = prob(solved_a)
    return float(min(1.0, sum(prob(k) for k in range(lo, hi + 1) if prob(k) <= observed * 1.0001)))


def quartiles(x) -> tuple[float, float, float]:
    """(25th, 50th, 75th) percentiles; inf where that share of the runs never solved."""
    x = np.sort(np.asarray(x, float).ravel())
    if len(x) == 0:
        return (math.nan,) * 3
    finite = x[np.isfinite(x)]
    top = finite.max() if len(finite) else 0.0
    # A quartile that interpolates towards an unsolved run (inf) is itself "not reached".
    q = np.percentile(np.where(np.isfinite(x), x, 1e300), [25, 50, 75])
    return tuple(float(v) if v <= top else math.inf for v in q)


def verdict(p: float, alpha: float = 0.05) -> str:
    """'significant (p = 0.008)' or 'not significant (p = 0.69)'."""
    word = "significant" if p < alpha else "not significant"
    return f"{word} (p = {p:.2g})"
