"""rnnlab.analysis.stats against closed forms and brute-force enumeration."""

import itertools
import math

import numpy as np
import pytest

from rnnlab.analysis import stats


def test_first_crossing_is_the_first_logged_step_below_and_inf_for_never_or_nan():
    steps = [10, 20, 30]
    curves = [[0.5, 0.05, 0.01], [0.5, 0.4, 0.3], [np.nan, np.nan, np.nan], [0.01, 0.5, 0.5]]
    np.testing.assert_array_equal(
        stats.first_crossing(steps, curves, 0.1), [20, np.inf, np.inf, 10]
    )
    with pytest.raises(ValueError, match="curves"):
        stats.first_crossing(steps, [[1.0, 2.0]], 0.1)


def test_mann_whitney_complete_separation_of_five_against_five_is_two_in_252():
    a, b = [1, 2, 3, 4, 5], [math.inf] * 5  # five solved against five that never did
    assert stats.mann_whitney(a, b) == pytest.approx(2 / math.comb(10, 5))
    assert stats.mann_whitney([1, 2, 3], [4, 5, 6]) == pytest.approx(0.1)  # 2 / C(6, 3)
    assert stats.mann_whitney([math.inf] * 3, [math.inf] * 3) == 1.0  # all tied: no evidence


def test_mann_whitney_equals_a_brute_force_permutation_test_with_ties():
    a, b = [3.0, 1.0, math.inf, 2.0], [2.0, math.inf, math.inf, 5.0, 4.0]
    pooled = np.array(a + b)
    ranks = stats.rankdata(pooled)
    u = lambda idx: abs(ranks[list(idx)].sum() - 10 - 4 * 5 / 2)  # noqa: E731
    observed = u(range(4))
    combos = list(itertools.combinations(range(9), 4))
    expected = sum(u(c) >= observed - 1e-9 for c in combos) / len(combos)
    assert stats.mann_whitney(a, b) == pytest.approx(expected)
    # Monte Carlo agrees with the exact value when enumeration is switched off.
    assert stats.mann_whitney(a, b, exact_limit=0, samples=50_000) == pytest.approx(
        expected, abs=0.01
    )
    with pytest.raises(ValueError, match="NaN"):
        stats.mann_whitney([np.nan], [1.0])


def test_rankdata_gives_ties_their_mean_rank():
    np.testing.assert_array_equal(
        stats.rankdata([10, math.inf, 10, 1, math.inf]), [2.5, 4.5, 2.5, 1, 4.5]
    )


def test_fisher_exact_matches_the_hypergeometric_closed_form():
    assert stats.fisher_exact(5, 5, 0, 5) == pytest.approx(2 / 252)
    # 4/5 against 0/5: 4 solved of 10; P(k solved in a) = C(5, k) C(5, 4 - k) / C(10, 4), and
    # only k = 4 and k = 0 (5/210 each) are as unlikely as the observed table.
    assert stats.fisher_exact(4, 5, 0, 5) == pytest.approx(10 / 210)
    assert stats.fisher_exact(2, 5, 3, 5) == pytest.approx(1.0)


def test_quartiles_are_never_where_unsolved_runs_reach_them():
    assert stats.quartiles([1, 2, 3, 4, 5]) == (2.0, 3.0, 4.0)
    assert stats.quartiles([1, 2, 3, math.inf, math.inf]) == (2.0, 3.0, math.inf)
    assert stats.quartiles([math.inf] * 3) == (math.inf,) * 3
    assert stats.verdict(0.2) == "not significant (p = 0.2)"
    assert stats.verdict(0.0079) == "significant (p = 0.0079)"
