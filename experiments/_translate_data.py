"""Data for experiments.translate: the sentence pairs (SCAN, synthetic, a TSV file or TFDS),
tokenised and filtered by length, the vocabularies built on train, and their encoding as
token ids."""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import NamedTuple

from experiments import _cli
from rnnlab.data import pairs as pairs_lib
from rnnlab.data import scan, synthetic_pairs

# --- data --------------------------------------------------------------------------------------

DATASETS = ("scan:SPLIT", "synthetic", "tsv:PATH", "tfds:NAME")


class Data(NamedTuple):
    """Tokenised splits ({"train"|"test": [(src_tokens, tgt_tokens)]}) and what reads them."""

    splits: dict
    source_vocab: pairs_lib.Vocab
    target_vocab: pairs_lib.Vocab
    tokenizer: pairs_lib.Tokenizer
    pretokenized: bool  # SCAN and synthetic: space-separated, BLEU with tokenize="none"


def _raw_pairs(config) -> tuple[dict, bool]:
    """{"train", "test"}: (source, target) strings, from config.dataset; and pretokenized."""
    kind, _, arg = config.dataset.partition(":")
    bad = lambda why: _cli.UsageError(f"--config.dataset={config.dataset!r}: {why}")  # noqa: E731
    if kind == "scan":
        if arg not in scan.SPLITS:
            raise bad(f"unknown SCAN split{_cli.suggest(arg, scan.SPLITS)}; known: {scan.SPLITS}")
        return scan.split(arg, seed=config.seed), True
    if kind == "synthetic":
        train = synthetic_pairs.generate(config.synthetic_pairs, seed=config.seed)
        test = synthetic_pairs.generate(2000, seed=config.seed, stream=1)
        return {"train": train, "test": test}, True
    if kind == "tsv":
        if not Path(arg).is_file():
            raise bad("no such file")
        try:
            read = pairs_lib.read_tsv(arg, lowercase=config.lowercase)
        except pairs_lib.MalformedLineError as e:
            raise bad(f"malformed line {e}") from None
        parts = pairs_lib.split_pairs(read.pairs, seed=config.seed)
        return {"train": parts["train"], "test": parts["test"]}, False
    if kind == "tfds":
        from rnnlab.data import tfds_source

        n, data_dir = config.max_train_pairs, config.tfds_data_dir or None
        try:
            train = tfds_source.open_pairs(arg, f"train[:{n}]" if n else "train", data_dir=data_dir)
            test = tfds_source.open_pairs(arg, config.test_split, data_dir=data_dir)
        except (FileNotFoundError, ValueError) as e:
            raise bad(_cli.one_line(e)) from None
        norm = lambda p: tuple(pairs_lib.normalize(s, lowercase=config.lowercase) for s in p)  # noqa: E731
        return {"train": [norm(p) for p in train], "test": [norm(p) for p in test]}, False
    close = difflib.get_close_matches(kind, [d.split(":")[0] for d in DATASETS], n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise bad(f"unknown kind{hint}; expected one of {', '.join(DATASETS)}")


def load_data(config) -> Data:
    """Reads, tokenises, filters by length and builds the vocabularies on train."""
    raw, pretokenized = _raw_pairs(config)
    tok = pairs_lib.get_tokenizer("space" if pretokenized else config.tokenizer)
    limit = {"train": config.max_train_pairs, "test": config.max_test_pairs}
    splits = {}
    for name, pairs in raw.items():
        pairs = [(tok.tokenize(s), tok.tokenize(t)) for s, t in pairs]
        if config.max_length:
            pairs = [p for p in pairs if max(map(len, p)) <= config.max_length]
        splits[name] = pairs[: limit[name] or None]
        _cli.check(bool(splits[name]), "dataset", config.dataset, f"no {name} pairs left")
    src_vocab = pairs_lib.Vocab.build((s for s, _ in splits["train"]), min_count=config.min_count)
    tgt_vocab = pairs_lib.Vocab.build((t for _, t in splits["train"]), min_count=config.min_count)
    return Data(splits, src_vocab, tgt_vocab, tok, pretokenized)


def encode(data: Data, name: str) -> list[tuple[list[int], list[int]]]:
    """Sources end in <eos>; targets are framed <bos> ... <eos>."""
    return [
        (data.source_vocab.encode(s), data.target_vocab.encode(t, add_bos=True))
        for s, t in data.splits[name]
    ]


def max_decode_length(config, data: Data) -> int:
    longest = max(len(t) for part in data.splits.values() for _, t in part)
    return config.max_decode_length or longest + 10  # + 1 for <eos>, the rest as slack
