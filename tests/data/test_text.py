"""Character-level text: corpora, the contiguous split, the vocabulary, exact stream positions."""

import jax
import numpy as np
import pytest

from rnnlab.data import text as text_lib

TEXT = "".join(f"line {i}: the quick brown fox (jumps)\n" for i in range(200))


def test_bad_utf8_file_error_names_the_file_and_byte_offset(tmp_path):
    (tmp_path / "a_good.txt").write_text("fine text\n", encoding="utf-8")
    bad = tmp_path / "b_latin1.txt"
    bad.write_bytes(b"caf" + "é".encode("latin-1") + b" au lait")
    with pytest.raises(text_lib.NotUtf8Error, match=r"b_latin1\.txt.*byte offset 3"):
        text_lib.load_corpus(str(tmp_path))
    with pytest.raises(text_lib.NotUtf8Error, match="b_latin1.txt"):
        text_lib.read_utf8(bad)


def test_directory_corpus_reads_files_in_sorted_order(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.txt").write_text("second", encoding="utf-8")
    (tmp_path / "a.txt").write_text("first", encoding="utf-8")
    (tmp_path / ".hidden").write_text("never", encoding="utf-8")
    assert text_lib.load_corpus(str(tmp_path)) == "first\nsecond"
    assert text_lib.load_corpus(str(tmp_path), max_chars=8) == "first\nse"
    with pytest.raises(FileNotFoundError, match="python_stdlib"):
        text_lib.load_corpus(str(tmp_path / "missing"))
    with pytest.raises(FileNotFoundError, match="did you mean 'python_stdlib'"):
        text_lib.load_corpus("python_stdlb")


def test_builtin_corpora_are_deterministic_and_capped():
    a = text_lib.load_corpus("python_stdlib", max_chars=5000)
    assert len(a) == 5000 and a == text_lib.load_corpus("python_stdlib", max_chars=5000)
    assert "def " in text_lib.python_stdlib(max_chars=50_000)
    docs = text_lib.load_corpus("python_docs", max_chars=3000)
    assert len(docs) == 3000 and "statement" in docs


def test_tfds_corpus_not_prepared_gives_a_clear_error(tmp_path):
    from rnnlab.data.tfds_source import DatasetNotPreparedError

    with pytest.raises(DatasetNotPreparedError, match="tiny_shakespeare.*not prepared"):
        text_lib.load_corpus("tfds:tiny_shakespeare", data_dir=str(tmp_path))


def test_split_is_contiguous_and_deterministic():
    parts = text_lib.split_text(TEXT, (0.8, 0.1, 0.1))
    assert parts.train + parts.valid + parts.test == TEXT  # by position, nothing shuffled
    assert len(parts.train) == round(0.8 * len(TEXT))
    assert len(parts.valid) == round(0.9 * len(TEXT)) - len(parts.train)
    assert parts == text_lib.split_text(TEXT, (0.8, 0.1, 0.1))
    with pytest.raises(ValueError, match="fractions"):
        text_lib.split_text(TEXT, (0.8, 0.3, 0.1))


def test_vocab_round_trip_unk_and_json(tmp_path):
    vocab = text_lib.CharVocab.from_text("hello")
    assert vocab.chars == ("e", "h", "l", "o") and vocab.size == 5
    ids = vocab.encode("hole!")
    np.testing.assert_array_equal(ids, [2, 4, 3, 1, 0])  # "!" is unseen: <unk> = 0
    assert vocab.decode(ids) == "hole" + text_lib.UNK_CHAR
    vocab.save(tmp_path / "vocab.json")
    assert text_lib.CharVocab.load(tmp_path / "vocab.json") == vocab
    strict = text_lib.CharVocab.from_text("hello", unk=False)
    np.testing.assert_array_equal(strict.encode("hello"), [1, 0, 2, 2, 3])
    with pytest.raises(ValueError, match="'x' at position 1"):
        strict.encode("hx")


def test_stream_batches_are_exact_and_contiguous():
    tokens = np.arange(1000, dtype=np.int32)  # id == position, so offsets are visible
    streams = text_lib.StreamBatcher(tokens, batch_size=4, seq_len=10)
    assert streams.streams.shape == (4, 250) and streams.steps_per_epoch == 24
    first, again = streams.batch(7), streams.batch(7)
    np.testing.assert_array_equal(first.inputs, again.inputs)  # the position is the step
    np.testing.assert_array_equal(first.inputs[:, 0], [70, 320, 570, 820])
    np.testing.assert_array_equal(first.targets, first.inputs + 1)
    for s in range(streams.steps_per_epoch - 1):
        a, b = streams.batch(s), streams.batch(s + 1)
        np.testing.assert_array_equal(b.inputs[:, 0], a.inputs[:, -1] + 1)  # contiguous text
        assert a.reset == (s == 0) and not b.reset
    wrapped = streams.batch(streams.steps_per_epoch + 3)  # epoch 2 repeats epoch 1
    np.testing.assert_array_equal(wrapped.inputs, streams.batch(3).inputs)
    assert streams.batch(streams.steps_per_epoch).reset


def test_stream_source_matches_host_batches_under_jit():
    streams = text_lib.StreamBatcher(np.arange(300, dtype=np.int32), batch_size=3, seq_len=7)
    source = streams.source()
    state = source.init()
    next_batch = jax.jit(source.next)
    for step in range(streams.steps_per_epoch + 2):
        batch, state = next_batch(state)
        host = streams.batch(step)
        np.testing.assert_array_equal(batch["inputs"], host.inputs)
        np.testing.assert_array_equal(batch["targets"], host.targets)
        assert bool(batch["reset"]) == host.reset


def test_unigram_baseline_matches_hand_computed_bits():
    train = np.array([0, 0, 1, 1, 1, 1, 2, 2])  # counts 2, 4, 2
    p = text_lib.unigram_probs(train, 3, alpha=0.0)
    np.testing.assert_allclose(p, [0.25, 0.5, 0.25])
    got = text_lib.unigram_bits_per_char(train, [0, 1, 1, 2], 3, alpha=0.0)
    assert got == pytest.approx((2 + 1 + 1 + 2) / 4)
