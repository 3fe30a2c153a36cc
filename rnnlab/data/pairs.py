"""Parallel text: TSV pairs, normalisation, tokenisers, vocabularies and a seeded split.

The file format is the Tatoeba/Anki pairs format of the TensorFlow and PyTorch NMT tutorials
(Luong, Pham & Manning 2015; Bahdanau, Cho & Bengio 2015 in tutorial form):

    source<TAB>target[<TAB>anything, e.g. the attribution]

one pair a line, UTF-8. A line with fewer than two fields, an empty side, or bytes that are not
UTF-8 is malformed: :func:`read_tsv` raises :class:`MalformedLineError` naming the file and the
1-based line number, or with ``skip_malformed=True`` leaves it out and reports its number.
Empty lines are ignored.

Text is normalised (Unicode NFC by default, or NFKC, which also folds compatibility forms such
as the ligature "ﬁ" and full-width letters), then tokenised by words or by characters. A
:class:`Vocab` is built from the training split only: tokens seen at least ``min_count`` times,
the rest map to ``<unk>``. Ids 0 to 3 are ``<pad>``, ``<bos>``, ``<eos>``, ``<unk>``.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from typing import NamedTuple

import numpy as np

PAD, BOS, EOS, UNK = "<pad>", "<bos>", "<eos>", "<unk>"
SPECIALS = (PAD, BOS, EOS, UNK)
PAD_ID, BOS_ID, EOS_ID, UNK_ID = 0, 1, 2, 3
NORMALIZATIONS = ("NFC", "NFKC", "NFD", "NFKD")


class MalformedLineError(ValueError):
    """A TSV line that is not ``source<TAB>target[<TAB>...]``; names the file and line."""

    def __init__(self, path: str, line_number: int, reason: str):
        super().__init__(f"{path}:{line_number}: {reason}")
        self.path = path
        self.line_number = line_number
        self.reason = reason


class TsvPairs(NamedTuple):
    """What :func:`read_tsv` returns.

    Attributes:
        pairs: (source, target) strings, normalised, in file order.
        skipped: 1-based numbers of the malformed lines left out (empty unless skipping).
    """

    pairs: list[tuple[str, str]]
    skipped: list[int]


def normalize(text: str, form: str | None = "NFC", *, lowercase: bool = False) -> str:
    """Unicode normalisation (``form`` in NFC/NFKC/NFD/NFKD, or None), optional lowercasing."""
    if form is not None:
        if form not in NORMALIZATIONS:
            raise ValueError(f"normalization must be one of {NORMALIZATIONS} or None, got {form!r}")
        text = unicodedata.normalize(form, text)
    return text.lower() if lowercase else text


def _check_line(fields: list[str]) -> str | None:
    if len(fields) < 2:
        return f"expected 'source<TAB>target[<TAB>...]', got {len(fields)} field(s)"
    if not fields[0].strip():
        return "empty source"
    if not fields[1].strip():
        return "empty target"
    return None


def read_tsv(
    path: str,
    *,
    normalization: str | None = "NFC",
    lowercase: bool = False,
    skip_malformed: bool = False,
) -> TsvPairs:
    """Reads ``source<TAB>target[<TAB>...]`` lines; columns after the second are ignored.

    Args:
        path: a UTF-8 file.
        normalization: Unicode form applied to both sides, or None.
        lowercase: lowercase both sides after normalising.
        skip_malformed: leave malformed lines out (their numbers come back in ``skipped``)
            instead of raising.

    Returns:
        TsvPairs(pairs, skipped), the sides stripped of surrounding whitespace.

    Raises:
        MalformedLineError: at the first malformed line, unless ``skip_malformed``.
    """
    pairs, skipped = [], []
    with open(path, "rb") as f:
        for number, raw in enumerate(f, start=1):
            try:
                line = raw.decode("utf-8").rstrip("\r\n")
            except UnicodeDecodeError as e:
                reason = f"not UTF-8 ({e.reason} at byte {e.start})"
            else:
                if not line.strip():
                    continue
                fields = line.split("\t")
                reason = _check_line(fields)
            if reason is not None:
                if not skip_malformed:
                    raise MalformedLineError(str(path), number, reason)
                skipped.append(number)
                continue
            source, target = (
                normalize(s.strip(), normalization, lowercase=lowercase) for s in fields[:2]
            )
            pairs.append((source, target))
    return TsvPairs(pairs, skipped)


# --- tokenisers --------------------------------------------------------------------------------


class Tokenizer(NamedTuple):
    """A named pair of functions: ``tokenize(str) -> list[str]``, ``detokenize(list) -> str``."""

    name: str
    tokenize: Callable[[str], list[str]]
    detokenize: Callable[[Sequence[str]], str]


# A word keeps inner apostrophes and hyphens ("don't", "l'homme", "well-known"); every other
# non-space character that is not part of a word is its own token ("¿", "?", ",", "!").
_WORD = re.compile(r"\w+(?:['’\-]\w+)*|[^\w\s]")


def _detokenize_words(tokens: Sequence[str]) -> str:
    return " ".join(tokens)


TOKENIZERS = {
    "word": Tokenizer("word", _WORD.findall, _detokenize_words),
    "space": Tokenizer("space", str.split, _detokenize_words),
    "char": Tokenizer("char", list, "".join),
}


def get_tokenizer(name: str) -> Tokenizer:
    """ "word" (punctuation split off), "space" (whitespace only) or "char" (spaces kept)."""
    if name not in TOKENIZERS:
        raise ValueError(f"unknown tokenizer {name!r}; known: {', '.join(TOKENIZERS)}")
    return TOKENIZERS[name]


# --- vocabulary --------------------------------------------------------------------------------


class Vocab:
    """Token <-> id, with ``<pad>`` = 0, ``<bos>`` = 1, ``<eos>`` = 2, ``<unk>`` = 3.

    Build one from the training split with :meth:`build`; other tokens are ordered by count,
    then alphabetically, so the same corpus always gives the same ids.
    """

    def __init__(self, tokens: Sequence[str]):
        tokens = list(tokens)
        if tuple(tokens[: len(SPECIALS)]) != SPECIALS:
            raise ValueError(f"a Vocab's first tokens must be {SPECIALS}, got {tokens[:4]}")
        if len(set(tokens)) != len(tokens):
            raise ValueError("a Vocab's tokens must be unique")
        self.tokens = tokens
        self._ids = {t: i for i, t in enumerate(tokens)}

    pad_id, bos_id, eos_id, unk_id = PAD_ID, BOS_ID, EOS_ID, UNK_ID

    @classmethod
    def build(
        cls, sequences: Iterable[Sequence[str]], *, min_count: int = 1, max_size: int | None = None
    ) -> Vocab:
        """From tokenised sequences: tokens seen ``min_count`` times or more.

        Args:
            sequences: tokenised texts (the training split only).
            min_count: the least count a token needs to get an id.
            max_size: the most ids in all, specials included; None for no limit.
        """
        if min_count < 1:
            raise ValueError(f"min_count must be >= 1, got {min_count}")
        counts = Counter(t for s in sequences for t in s)
        for special in SPECIALS:
            counts.pop(special, None)
        kept = sorted(
            (t for t, c in counts.items() if c >= min_count), key=lambda t: (-counts[t], t)
        )
        if max_size is not None:
            kept = kept[: max(0, max_size - len(SPECIALS))]
        return cls([*SPECIALS, *kept])

    def __len__(self) -> int:
        return len(self.tokens)

    def __contains__(self, token: str) -> bool:
        return token in self._ids

    def __eq__(self, other) -> bool:
        return isinstance(other, Vocab) and self.tokens == other.tokens

    def __repr__(self) -> str:
        return f"Vocab(size={len(self)})"

    def id(self, token: str) -> int:
        """The id of ``token``, ``<unk>``'s if it has none."""
        return self._ids.get(token, UNK_ID)

    def encode(
        self, tokens: Sequence[str], *, add_bos: bool = False, add_eos: bool = True
    ) -> list[int]:
        """Ids of ``tokens`` (unknown ones -> ``<unk>``), optionally framed by bos/eos."""
        ids = [self._ids.get(t, UNK_ID) for t in tokens]
        return [BOS_ID] * add_bos + ids + [EOS_ID] * add_eos

    def decode(self, ids: Iterable[int], *, strip_special: bool = True) -> list[str]:
        """Tokens of ``ids``, stopping at the first ``<eos>``; drops pad/bos if ``strip_special``.

        ``<unk>`` is kept (it stands for a real token).
        """
        out = []
        for i in ids:
            i = int(i)
            if i == EOS_ID:
                break
            if strip_special and i in (PAD_ID, BOS_ID):
                continue
            out.append(self.tokens[i])
        return out

    def to_json(self) -> str:
        return json.dumps({"tokens": self.tokens}, ensure_ascii=False)

    @classmethod
    def from_json(cls, text: str) -> Vocab:
        return cls(json.loads(text)["tokens"])

    def save(self, path: str) -> None:
        with open(path, "w", encoding="utf-8") as f:
            f.write(self.to_json())

    @classmethod
    def load(cls, path: str) -> Vocab:
        with open(path, encoding="utf-8") as f:
            return cls.from_json(f.read())


# --- split and encode --------------------------------------------------------------------------


def split_pairs(
    pairs: Sequence, fractions: Sequence[float] = (0.8, 0.1, 0.1), *, seed: int = 0
) -> dict[str, list]:
    """A deterministic train/valid/test split: a seeded permutation cut by ``fractions``.

    Args:
        pairs: anything indexable; the parts hold its items.
        fractions: (train, valid, test), summing to 1. valid and test get
            ``round(fraction * n)`` items; train the rest.
        seed: the permutation's seed; the same (pairs, seed) give the same split.

    Returns:
        {"train": [...], "valid": [...], "test": [...]}.
    """
    if len(fractions) != 3 or min(fractions) < 0 or abs(sum(fractions) - 1.0) > 1e-6:
        raise ValueError(f"fractions must be 3 non-negative numbers summing to 1, got {fractions}")
    n = len(pairs)
    order = np.random.default_rng(seed).permutation(n)
    num_valid, num_test = round(fractions[1] * n), round(fractions[2] * n)
    num_train = n - num_valid - num_test
    cuts = {"train": order[:num_train], "valid": order[num_train : num_train + num_valid]}
    cuts["test"] = order[num_train + num_valid :]
    return {name: [pairs[i] for i in idx] for name, idx in cuts.items()}


class ParallelData(NamedTuple):
    """Encoded splits with their vocabularies, from :func:`prepare`.

    Attributes:
        splits: {"train"|"valid"|"test": [(source_ids, target_ids)]}; sources end in ``<eos>``,
            targets are framed by ``<bos>`` ... ``<eos>``.
        text: the same splits as (source, target) strings, for BLEU against references.
        source_vocab, target_vocab: built from the training split.
        tokenizer: the tokenizer used on both sides.
    """

    splits: dict[str, list[tuple[list[int], list[int]]]]
    text: dict[str, list[tuple[str, str]]]
    source_vocab: Vocab
    target_vocab: Vocab
    tokenizer: Tokenizer


def prepare(
    pairs: Sequence[tuple[str, str]],
    *,
    tokenizer: str = "word",
    min_count: int = 1,
    fractions: Sequence[float] = (0.8, 0.1, 0.1),
    seed: int = 0,
) -> ParallelData:
    """Split, tokenise, build the vocabularies on train and encode every split."""
    tok = get_tokenizer(tokenizer)
    text = split_pairs(pairs, fractions, seed=seed)
    tokenized = {k: [(tok.tokenize(s), tok.tokenize(t)) for s, t in v] for k, v in text.items()}
    source_vocab = Vocab.build((s for s, _ in tokenized["train"]), min_count=min_count)
    target_vocab = Vocab.build((t for _, t in tokenized["train"]), min_count=min_count)
    splits = {
        k: [(source_vocab.encode(s), target_vocab.encode(t, add_bos=True)) for s, t in v]
        for k, v in tokenized.items()
    }
    return ParallelData(splits, text, source_vocab, target_vocab, tok)
