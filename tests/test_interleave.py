"""The benchmarks' round orders (scripts/_interleave.py): every contender follows every other one
equally often, which the cyclic shift they replace did not do."""

import sys
from collections import Counter
from itertools import permutations
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))

from _interleave import round_orders, williams_orders  # noqa: E402


def _adjacent(orders):
    """How often each ordered pair (a, b) has b directly after a inside a round."""
    return Counter((a, b) for order in orders for a, b in zip(order, order[1:]))


@pytest.mark.parametrize("n", range(1, 9))
def test_every_contender_follows_every_other_equally_often(n):
    orders = williams_orders(n)
    assert len(orders) == (n if n % 2 == 0 else 2 * n)
    assert all(sorted(order) == list(range(n)) for order in orders)  # each a permutation
    pairs = _adjacent(orders)
    times = 1 if n % 2 == 0 else 2
    assert pairs == {pair: times for pair in permutations(range(n), 2)}
    first = Counter(order[0] for order in orders)  # each starts a round equally often
    assert first == {k: len(orders) // n for k in range(n)}


def test_the_cyclic_shift_it_replaces_was_not_balanced():
    names = ["rnnlab", "rnnlab_dp", "torch"]
    shifted = [names[r:] + names[:r] for r in range(3)]
    assert _adjacent(shifted)[("torch", "rnnlab")] == 2
    assert _adjacent(shifted)[("rnnlab_dp", "rnnlab")] == 0  # rnnlab never follows rnnlab_dp
    balanced = round_orders(names, 6)
    assert _adjacent(balanced)[("torch", "rnnlab")] == _adjacent(balanced)[("rnnlab_dp", "rnnlab")]


def test_round_orders_cycle_through_the_design():
    names = ["rnnlab", "torch"]
    assert round_orders(names, 5) == [
        ["rnnlab", "torch"],
        ["torch", "rnnlab"],
        ["rnnlab", "torch"],
        ["torch", "rnnlab"],
        ["rnnlab", "torch"],
    ]
    assert round_orders(["only"], 3) == [["only"]] * 3
    with pytest.raises(ValueError, match="at least 1"):
        williams_orders(0)
