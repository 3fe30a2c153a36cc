"""TFDS without TensorFlow: the project's builders as array_record, any translation data set by
name through ``tfds.data_source``, and the error when a data set is not prepared here."""

import sys

import pytest
import tensorflow_datasets as tfds

from rnnlab.data import pairs, scan
from rnnlab.data import tfds_source as ts


class RnnlabTestTranslate(tfds.core.GeneratorBasedBuilder):
    """Shaped like wmt14_translate/de-en: a top-level Translation feature, supervised (de, en)."""

    VERSION = tfds.core.Version("1.0.0")
    PAIRS = [("Hallo Welt", "hello world"), ("Grüß Gott", "good day"), ("Danke", "thanks")]

    def _info(self):
        return tfds.core.DatasetInfo(
            builder=self,
            features=tfds.features.Translation(languages=("de", "en")),
            supervised_keys=("de", "en"),
            disable_shuffling=True,
        )

    def _split_generators(self, dl_manager):
        return {"train": self._generate_examples()}

    def _generate_examples(self):
        for i, (de, en) in enumerate(self.PAIRS):
            yield i, {"de": de, "en": en}


def tsv(tmp_path, n=20):
    lines = [f"Phrase {i} é\tSentence {i}\tattribution #{i}" for i in range(n)]
    lines[5] = "malformed"
    path = tmp_path / "fra.tsv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return str(path)


def test_tsv_builder_writes_array_record_and_reads_back_by_name(tmp_path):
    data_dir = str(tmp_path / "tfds")
    path = tsv(tmp_path)
    builder = ts.TsvPairsBuilder(
        path=path,
        config="tiny",
        seed=1,
        skip_malformed=True,
        data_dir=data_dir,
        file_format="array_record",
    )
    ts.prepare(builder)
    expected = pairs.split_pairs(pairs.read_tsv(path, skip_malformed=True).pairs, seed=1)
    for split in ("train", "valid", "test"):
        got = ts.open_pairs("rnnlab_tsv_pairs/tiny", split, data_dir=data_dir)
        assert list(got) == expected[split]  # generation order kept
    raw = tfds.data_source("rnnlab_tsv_pairs/tiny", split="valid", data_dir=data_dir)
    assert raw[0]["source"] == expected["valid"][0][0].encode()  # Text comes back as bytes
    assert "tensorflow" not in sys.modules
    with pytest.raises(ValueError, match="file_format"):
        ts.prepare(ts.TsvPairsBuilder(path=path, config="tf", data_dir=data_dir))


def test_translation_dataset_pairs_follow_supervised_keys_or_the_named_source(tmp_path):
    data_dir = str(tmp_path)
    RnnlabTestTranslate(data_dir=data_dir, file_format="array_record").download_and_prepare()
    name = "rnnlab_test_translate"
    de_en = ts.open_pairs(name, "train", data_dir=data_dir)
    assert (de_en.source_key, de_en.target_key) == ("de", "en")
    assert list(de_en) == RnnlabTestTranslate.PAIRS and de_en[1] == ("Grüß Gott", "good day")
    en_de = ts.open_pairs(name, "train[1:]", data_dir=data_dir, source_key="en")
    assert en_de[0:2] == [("good day", "Grüß Gott"), ("thanks", "Danke")]
    with pytest.raises(ValueError, match="not a Text feature"):
        ts.open_pairs(name, data_dir=data_dir, source_key="fr")


def test_scan_builder_matches_the_generator(tmp_path):
    builder = ts.ScanBuilder(
        config="addprim_turn_left", data_dir=str(tmp_path), file_format="array_record"
    )
    ts.prepare(builder)
    test = ts.open_pairs("rnnlab_scan/addprim_turn_left", "test", data_dir=str(tmp_path))
    expected = scan.split("addprim_turn_left")["test"]
    assert len(test) == len(expected) == 1208
    assert test.__getitems__([0, 600, 1207]) == [expected[0], expected[600], expected[1207]]


@pytest.mark.parametrize(
    "name", ["rnnlab_scan/length", "ted_hrlr_translate/pt_to_en", "no_such_translate/xx-yy"]
)
def test_unprepared_dataset_without_network_gives_a_clear_error(tmp_path, name):
    how = r"prepare\(ScanBuilder" if name.startswith("rnnlab_") else "tfds build"
    with pytest.raises(ts.DatasetNotPreparedError, match=f"not prepared as array_record.*{how}"):
        ts.open_pairs(name, "train", data_dir=str(tmp_path))
