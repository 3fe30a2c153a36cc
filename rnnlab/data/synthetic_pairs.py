"""A synthetic language pair with controllable length, for quality against sentence length.

Translation quality of encoder-decoders falls with sentence length (Cho et al. 2014, "On the
properties of neural machine translation"), and attention is what holds it up (Bahdanau, Cho &
Bengio 2015, Fig. 2). This pair measures that offline, without corpora: the source is a toy SVO
language, the target a toy SOV language with its own lexicon.

    source clause:  DET ADJ* NOUN  VERB  DET ADJ* NOUN          (subject, verb, object)
    target clause:  DET' NOUN' ADJ'*  DET' NOUN' ADJ'*  VERB'   (SOV, adjectives after nouns)
    sentence:       clause (and clause)*,  each clause reordered on its own

Every source word has one target word (the lexicon, a bijection), so the target is a function
of the source (:func:`translate`) and has the same length; what a model must learn is the
lexicon, the verb moving past the object (a dependency over up to 9 tokens) and the adjectives
moving past their noun. A sentence of length L (5 <= L, 5 to 50 by default) has k clauses with
6k - 1 <= L <= 12k - 1, k drawn uniformly among those, and the L - (6k - 1) adjectives spread at
random over its 2k noun phrases (at most 3 each). Everything is a function of the seeds.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

MIN_LENGTH, MAX_LENGTH = 5, 50
MAX_ADJECTIVES = 3  # per noun phrase
CATEGORIES = ("determiner", "noun", "verb", "adjective", "conjunction")


class Lexicon(NamedTuple):
    """The two vocabularies and the word-for-word mapping.

    Attributes:
        words: category -> the source words of that category (see ``CATEGORIES``).
        category: source word -> its category.
        target: source word -> target word.
    """

    words: dict[str, tuple[str, ...]]
    category: dict[str, str]
    target: dict[str, str]


def _pseudo_words(rng: np.random.Generator, count: int, consonants: str, vowels: str, taken: set):
    out = []
    while len(out) < count:
        syllables = rng.integers(1, 4)
        word = "".join(
            rng.choice(list(consonants)) + rng.choice(list(vowels)) for _ in range(syllables)
        )
        if word not in taken:
            taken.add(word)
            out.append(word)
    return out


def make_lexicon(
    seed: int = 0, *, num_nouns: int = 40, num_verbs: int = 20, num_adjectives: int = 20
) -> Lexicon:
    """A random lexicon: pseudo-words (consonant-vowel syllables), disjoint across languages.

    Args:
        seed: fixes every word.
        num_nouns, num_verbs, num_adjectives: open-class sizes; there are always 2 determiners
            and 1 conjunction.
    """
    rng = np.random.default_rng([seed, 0x1E7])
    sizes = dict(determiner=2, noun=num_nouns, verb=num_verbs, adjective=num_adjectives)
    sizes["conjunction"] = 1
    taken: set[str] = set()
    source = {
        c: tuple(_pseudo_words(rng, n, "bdgklmnprst", "aeiou", taken)) for c, n in sizes.items()
    }
    targets = {c: _pseudo_words(rng, n, "fhjvwzcx", "aoy", taken) for c, n in sizes.items()}
    category = {w: c for c, ws in source.items() for w in ws}
    target = {w: t for c in CATEGORIES for w, t in zip(source[c], targets[c])}
    return Lexicon(source, category, target)


def _clause_counts(length: int) -> range:
    # k clauses take 6k - 1 tokens without adjectives (5 each, k - 1 conjunctions) and at most
    # 2 * MAX_ADJECTIVES more each: 6k - 1 <= length <= (6 + 2 * MAX_ADJECTIVES) k - 1.
    low = -(-(length + 1) // (6 + 2 * MAX_ADJECTIVES))
    return range(max(1, low), (length + 1) // 6 + 1)


def sample(rng: np.random.Generator, length: int, lexicon: Lexicon) -> list[str]:
    """A source sentence of exactly ``length`` tokens."""
    if length < MIN_LENGTH:
        raise ValueError(f"length must be >= {MIN_LENGTH}, got {length}")
    counts = _clause_counts(length)
    num_clauses = counts[int(rng.integers(len(counts)))]
    adjectives = [0] * (2 * num_clauses)
    for _ in range(length - (6 * num_clauses - 1)):
        room = [i for i, a in enumerate(adjectives) if a < MAX_ADJECTIVES]
        adjectives[room[int(rng.integers(len(room)))]] += 1
    w = lexicon.words
    pick = lambda c: w[c][int(rng.integers(len(w[c])))]  # noqa: E731

    def noun_phrase(num_adjectives):
        return [
            pick("determiner"),
            *(pick("adjective") for _ in range(num_adjectives)),
            pick("noun"),
        ]

    words: list[str] = []
    for k in range(num_clauses):
        if k:
            words.append(w["conjunction"][0])
        words += (
            noun_phrase(adjectives[2 * k]) + [pick("verb")] + noun_phrase(adjectives[2 * k + 1])
        )
    return words


def translate(source: Sequence[str], lexicon: Lexicon, *, adjectives_after_noun: bool = True):
    """The reference translation: SVO -> SOV clause by clause, then the lexicon.

    Args:
        source: source tokens, as :func:`sample` makes them.
        lexicon: the word mapping.
        adjectives_after_noun: move adjectives after their noun (as French does).

    Returns:
        The target tokens (as many as the source's).
    """
    conjunction = lexicon.words["conjunction"][0]

    def noun_phrase(words):
        det, *adjs, noun = words
        return [det, noun, *adjs] if adjectives_after_noun else words

    out: list[str] = []
    clause: list[str] = []
    for word in [*source, conjunction]:
        if word != conjunction:
            clause.append(word)
            continue
        cats = [lexicon.category.get(t) for t in clause]
        if cats.count("verb") != 1:
            raise ValueError(f"not a clause of this language: {' '.join(clause)!r}")
        v = cats.index("verb")
        if out:
            out.append(conjunction)
        out += noun_phrase(clause[:v]) + noun_phrase(clause[v + 1 :]) + [clause[v]]
        clause = []
    return [lexicon.target[t] for t in out]


def generate(
    num_examples: int,
    *,
    seed: int = 0,
    min_length: int = MIN_LENGTH,
    max_length: int = MAX_LENGTH,
    lexicon: Lexicon | None = None,
    stream: int = 0,
) -> list[tuple[str, str]]:
    """(source, target) sentences, lengths uniform in [min_length, max_length].

    Example i depends only on (seed, stream, i), so a longer list extends a shorter one.

    Args:
        num_examples: how many pairs.
        seed: the data seed (the lexicon has its own; default ``make_lexicon(seed)``).
        min_length, max_length: the token range, inclusive.
        lexicon: the word mapping.
        stream: separates draws made for different purposes (train 0, test 1, ...).

    Returns:
        Space-separated (source, target) strings, as a TSV file would give them.
    """
    if not MIN_LENGTH <= min_length <= max_length:
        raise ValueError(
            f"need {MIN_LENGTH} <= min_length <= max_length, got {min_length}, {max_length}"
        )
    lexicon = lexicon or make_lexicon(seed)
    out = []
    for i in range(num_examples):
        rng = np.random.default_rng([seed, stream, i])
        source = sample(rng, int(rng.integers(min_length, max_length + 1)), lexicon)
        out.append((" ".join(source), " ".join(translate(source, lexicon))))
    return out


def by_length(
    lengths: Sequence[int],
    num_per_length: int,
    *,
    seed: int = 0,
    lexicon: Lexicon | None = None,
    exclude: set[str] | frozenset = frozenset(),
) -> dict[int, list[tuple[str, str]]]:
    """Test sets of exactly ``num_per_length`` pairs at each length, none of whose sources is
    in ``exclude`` (e.g. the training sources), drawn from a stream apart from :func:`generate`'s.
    """
    lexicon = lexicon or make_lexicon(seed)
    out = {}
    for length in lengths:
        pairs, i = [], 0
        while len(pairs) < num_per_length:
            rng = np.random.default_rng([seed, 0xB7, length, i])  # apart from generate's
            source = sample(rng, length, lexicon)
            i += 1
            if " ".join(source) in exclude:
                continue
            pairs.append((" ".join(source), " ".join(translate(source, lexicon))))
        out[length] = pairs
    return out
