"""Parallel text (TSV, normalisation, tokenisers, Vocab, split) and the synthetic pair."""

import json

import numpy as np
import pytest

from rnnlab.data import pairs
from rnnlab.data import synthetic_pairs as sp


def write_tsv(tmp_path, lines, name="pairs.tsv"):
    path = tmp_path / name
    path.write_bytes(b"".join(line if isinstance(line, bytes) else line.encode() for line in lines))
    return str(path)


def twenty_lines(bad_at=13):
    lines = [
        f"Go {i}.\tVa {i} !\tCC-BY 2.0 (France) Attribution: tatoeba.org #{i}\n"
        for i in range(1, 21)
    ]
    lines[bad_at - 1] = "a line without a tab\n"
    return lines


def test_malformed_line_error_names_the_file_and_line_number(tmp_path):
    path = write_tsv(tmp_path, twenty_lines(bad_at=13))
    with pytest.raises(pairs.MalformedLineError, match=r"pairs\.tsv:13: expected") as info:
        pairs.read_tsv(path)
    assert info.value.line_number == 13 and info.value.path == path


def test_skip_malformed_leaves_the_line_out_and_counts_it(tmp_path):
    read = pairs.read_tsv(write_tsv(tmp_path, twenty_lines(bad_at=13)), skip_malformed=True)
    assert read.skipped == [13] and len(read.pairs) == 19
    assert read.pairs[0] == ("Go 1.", "Va 1 !") and read.pairs[12] == ("Go 14.", "Va 14 !")


@pytest.mark.parametrize(
    "bad, reason",
    [
        (b"\tcible\n", "empty source"),
        (b"source\t  \n", "empty target"),
        (b"caf\xe9\tx\n", "not UTF-8"),
    ],
)
def test_other_malformed_lines(tmp_path, bad, reason):
    path = write_tsv(tmp_path, [b"a\tb\n", b"\n", bad, b"c\td\n"])
    with pytest.raises(pairs.MalformedLineError, match=f":3: {reason}"):
        pairs.read_tsv(path)


def test_extra_columns_empty_lines_and_crlf_are_accepted(tmp_path):
    path = write_tsv(tmp_path, ["Hi.\tSalut.\tattribution\r\n", "\r\n", " Run! \t Cours\u00a0! \n"])
    assert pairs.read_tsv(path).pairs == [("Hi.", "Salut."), ("Run!", "Cours\u00a0!")]


def test_normalisation_forms(tmp_path):
    path = write_tsv(tmp_path, ["Cafe\u0301 \ufb01n\tＡＢＣ\n"])
    assert pairs.read_tsv(path).pairs == [("Caf\u00e9 \ufb01n", "ＡＢＣ")]  # NFC composes only
    assert pairs.read_tsv(path, normalization="NFKC", lowercase=True).pairs == [
        ("caf\u00e9 fin", "abc")
    ]
    assert pairs.read_tsv(path, normalization=None).pairs == [("Cafe\u0301 \ufb01n", "ＡＢＣ")]
    with pytest.raises(ValueError, match="normalization"):
        pairs.normalize("x", "NFX")


def test_word_and_char_tokenizers():
    word = pairs.get_tokenizer("word")
    assert word.tokenize("¿Dónde está? Don't stop, l'homme.") == [
        *("¿", "Dónde", "está", "?", "Don't", "stop", ",", "l'homme", "."),
    ]
    char = pairs.get_tokenizer("char")
    assert char.tokenize("Va !") == ["V", "a", " ", "!"]
    assert char.detokenize(char.tokenize("Où es-tu ?")) == "Où es-tu ?"
    assert pairs.get_tokenizer("space").tokenize(" walk  left ") == ["walk", "left"]
    with pytest.raises(ValueError, match="unknown tokenizer"):
        pairs.get_tokenizer("bpe")


def test_vocab_ids_min_count_unk_and_json_roundtrip(tmp_path):
    vocab = pairs.Vocab.build([["b", "a", "b", "c"], ["a", "b", "<eos>"]], min_count=2)
    assert vocab.tokens == ["<pad>", "<bos>", "<eos>", "<unk>", "b", "a"]  # by count, then name
    assert (vocab.pad_id, vocab.bos_id, vocab.eos_id, vocab.unk_id) == (0, 1, 2, 3)
    ids = vocab.encode(["a", "c", "b"], add_bos=True)
    assert ids == [1, 5, 3, 4, 2]
    assert vocab.decode(ids + [4, 0]) == ["a", "<unk>", "b"]  # stops at <eos>
    assert vocab.decode([1, 4, 0, 5], strip_special=False) == ["<bos>", "b", "<pad>", "a"]
    path = str(tmp_path / "vocab.json")
    vocab.save(path)
    assert pairs.Vocab.load(path) == vocab and json.load(open(path))["tokens"] == vocab.tokens
    assert len(pairs.Vocab.build([["x"] * 3, ["y"]], max_size=5)) == 5


def test_split_is_deterministic_disjoint_and_complete():
    items = [(f"s{i}", f"t{i}") for i in range(101)]
    a, b = pairs.split_pairs(items, seed=3), pairs.split_pairs(items, seed=3)
    assert a == b and a != pairs.split_pairs(items, seed=4)
    assert [len(a[k]) for k in ("train", "valid", "test")] == [81, 10, 10]
    assert sorted(a["train"] + a["valid"] + a["test"]) == sorted(items)
    with pytest.raises(ValueError, match="fractions"):
        pairs.split_pairs(items, (0.5, 0.5))


def test_prepare_builds_vocabularies_from_train_only():
    items = [(f"w{i % 7} common", f"v{i % 5} commun") for i in range(50)] + [("rare", "rare")]
    data = pairs.prepare(items, min_count=1, fractions=(0.8, 0.1, 0.1), seed=0)
    train_words = {w for s, _ in data.text["train"] for w in s.split()}
    assert set(data.source_vocab.tokens[4:]) == train_words
    for (source, _), (s_ids, t_ids) in zip(data.text["test"], data.splits["test"]):
        assert t_ids[0] == pairs.BOS_ID and t_ids[-1] == s_ids[-1] == pairs.EOS_ID
        assert data.source_vocab.decode(s_ids) == [
            w if w in data.source_vocab else "<unk>" for w in source.split()
        ]


# --- the synthetic language pair ---------------------------------------------------------------

TINY = sp.Lexicon(
    words={
        "determiner": ("the",),
        "noun": ("cat", "dog"),
        "verb": ("sees",),
        "adjective": ("big", "red"),
        "conjunction": ("and",),
    },
    category={
        **dict.fromkeys(["the"], "determiner"),
        **dict.fromkeys(["cat", "dog"], "noun"),
        "sees": "verb",
        **dict.fromkeys(["big", "red"], "adjective"),
        "and": "conjunction",
    },
    target={
        "the": "le",
        "cat": "chat",
        "dog": "chien",
        "sees": "voit",
        "big": "grand",
        "red": "rouge",
        "and": "et",
    },
)


def test_translation_is_svo_to_sov_with_adjectives_after_nouns():
    source = "the big red cat sees the dog and the dog sees the cat".split()
    assert sp.translate(source, TINY) == (
        "le chat grand rouge le chien voit et le chien le chat voit".split()
    )
    assert sp.translate(source[:7], TINY, adjectives_after_noun=False) == (
        "le grand rouge chat le chien voit".split()
    )
    with pytest.raises(ValueError, match="not a clause"):
        sp.translate("the cat the dog".split(), TINY)


@pytest.mark.parametrize("length", [5, 6, 11, 12, 23, 50])
def test_sentences_have_exactly_the_asked_length(length):
    lexicon = sp.make_lexicon(0)
    for i in range(20):
        source = sp.sample(np.random.default_rng(i), length, lexicon)
        assert len(source) == length
        assert len(sp.translate(source, lexicon)) == length
    with pytest.raises(ValueError, match="length"):
        sp.sample(np.random.default_rng(0), 4, lexicon)


def test_generate_is_deterministic_per_seed_and_prefix_stable():
    a = sp.generate(300, seed=1)
    assert a == sp.generate(300, seed=1) and a[:100] == sp.generate(100, seed=1)
    assert a != sp.generate(300, seed=2)
    lengths = [len(s.split()) for s, _ in a]
    assert min(lengths) >= 5 and max(lengths) <= 50 and len(set(lengths)) > 30
    lexicon = sp.make_lexicon(1)
    assert all(t.split() == sp.translate(s.split(), lexicon) for s, t in a)
    words = {w for s, t in a for w in s.split()}
    assert not words & {w for _, t in a for w in t.split()}  # the two lexicons are disjoint


def test_by_length_test_sets_exclude_training_sources():
    train = sp.generate(2000, seed=0, max_length=6)
    tests = sp.by_length([5, 6, 30], 50, seed=0, exclude={s for s, _ in train})
    assert {k: len(v) for k, v in tests.items()} == {5: 50, 6: 50, 30: 50}
    assert all(len(s.split()) == k for k, v in tests.items() for s, _ in v)
    assert not {s for v in tests.values() for s, _ in v} & {s for s, _ in train}
