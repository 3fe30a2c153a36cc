"""The order in which interleaved benchmarks call their contenders, round by round.

A call leaves something behind for the next one: PyTorch's OpenMP threads spin at their barrier
for a while after each call, XLA's pool threads spin or sleep, caches are left full of the last
contender's data. So in a benchmark that calls each contender once per round, who follows whom
matters. Starting each round one contender later (a cyclic shift) does not change that: the
sequence stays a b c | b c a | c a b, and a follows c in every round but the first. With
``--peers torch`` in ``bench_cells.py`` (rnnlab, rnnlab_dp, torch) rnnlab followed PyTorch in two
rounds of three; called right after PyTorch's step each time, the LSTM step at (32, 64, 128, 128)
took 15.9-18.6 ms, against 12.3-15.2 ms in a process of its own (docs/performance.md, session 11).

``round_orders`` cycles through a Williams design instead: a set of orders (n for an even
number of contenders, 2n for an odd one) in which every contender directly follows every other
one equally often, and starts a round equally often. Two contenders a, b get a b | b a | a b |
..., so each follows itself as often as the other.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

T = TypeVar("T")


def williams_orders(n: int) -> list[list[int]]:
    """Orders of 0..n-1 in which each ordered pair (i, j), i != j, is adjacent equally often:
    once over the n orders for even n, twice over the 2n orders for odd n."""
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    first, low, high = [0], 1, n - 1
    while len(first) < n:  # 0, 1, n-1, 2, n-2, ...
        first.append(low)
        low += 1
        if len(first) < n:
            first.append(high)
            high -= 1
    orders = [[(k + r) % n for k in first] for r in range(n)]
    if n % 2:
        orders += [order[::-1] for order in orders]
    return orders


def round_orders(names: Sequence[T], rounds: int) -> list[list[T]]:
    """The contenders' order in each of ``rounds`` rounds: the Williams orders of ``names`` in
    turn (balanced over every whole cycle of them)."""
    orders = williams_orders(len(names))
    return [[names[k] for k in orders[r % len(orders)]] for r in range(rounds)]
