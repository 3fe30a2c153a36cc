"""Captions files (Flickr8k CSV, Karpathy JSON), image loading and TFDS coco_captions, on small
fixtures written here: the readers get the captions right and name the file and line of every
problem."""

import io
import json

import numpy as np
import pytest
import tensorflow_datasets as tfds
from PIL import Image

from rnnlab.data import caption_files as cf
from rnnlab.data.tfds_source import DatasetNotPreparedError


def _png(path, size=(8, 6), mode="RGB", value=100):
    Image.new(mode, size[::-1], value if mode == "L" else (value, 20, 30)).save(path)
    return path


@pytest.fixture
def flickr(tmp_path):
    images = tmp_path / "Images"
    images.mkdir()
    for name in ("a.png", "b.png"):
        _png(images / name)
    text = (
        "image,caption\n"
        "a.png,A dog runs .\n"
        'a.png,"A dog, brown, runs ."\n'
        "b.png,Two cats sit, side by side .\n"
        "\n"
        "b.png,A cat .\n"
    )
    (tmp_path / "captions.txt").write_text(text)
    return tmp_path


def test_flickr8k_csv_groups_captions_by_image(flickr):
    data = cf.read_flickr8k(str(flickr / "captions.txt"), str(flickr / "Images"))
    assert data.filenames == ["a.png", "b.png"] and data.lines == [2, 4]
    assert data.captions == [
        ["A dog runs .", "A dog, brown, runs ."],
        ["Two cats sit, side by side .", "A cat ."],
    ]
    assert data.splits is None and len(data.pairs()) == 4
    images = cf.load_images(data.paths(), (8, 6))
    assert images.shape == (2, 8, 6, 3) and images.dtype == np.float32
    np.testing.assert_allclose(images[0, 0, 0], np.array([100, 20, 30]) / 255.0)


@pytest.mark.parametrize(
    "line,message",
    [
        ("c.png,A bird .", r"captions.txt:7: 1 captioned image\(s\) not found .*line 7: 'c.png'"),
        ("a.png,   ", r"captions.txt:7: empty caption for 'a.png'"),
        ("a.png", r"captions.txt:7: expected image,caption"),
        (",A bird .", r"captions.txt:7: empty image name"),
    ],
)
def test_flickr8k_errors_name_the_file_and_line(flickr, line, message):
    path = flickr / "captions.txt"
    path.write_text(path.read_text() + line + "\n")
    with pytest.raises(cf.CaptionFileError, match=message):
        cf.read_flickr8k(str(path), str(flickr / "Images"))


def _karpathy(tmp_path, images):
    doc = {"dataset": "coco", "images": images}
    path = tmp_path / "dataset_coco.json"
    path.write_text(json.dumps(doc, indent=1))
    return path


def _entry(name, split, *raws, filepath="val2014"):
    sentences = [{"raw": r, "tokens": r.lower().split()} for r in raws]
    return {"filepath": filepath, "filename": name, "split": split, "sentences": sentences}


def test_karpathy_json_reads_splits_with_restval_in_train(tmp_path):
    (tmp_path / "val2014").mkdir()
    for name in ("x.png", "y.png", "z.png"):
        _png(tmp_path / "val2014" / name)
    images = [
        _entry("x.png", "train", "A man .", "A person ."),
        _entry("y.png", "restval", "A boat ."),
        _entry("z.png", "test", "A tree ."),
    ]
    path = _karpathy(tmp_path, images)
    train = cf.read_karpathy(str(path), str(tmp_path), split="train")
    assert train.filenames == ["val2014/x.png", "val2014/y.png"]
    assert train.captions == [["A man .", "A person ."], ["A boat ."]]
    assert train.splits == ["train", "restval"]
    only = cf.read_karpathy(str(path), str(tmp_path), split="train", restval_in_train=False)
    assert only.filenames == ["val2014/x.png"]
    assert cf.read_karpathy(str(path), str(tmp_path), split="test").captions == [["A tree ."]]
    assert cf.load_images(train.paths(), (8, 6)).shape == (2, 8, 6, 3)


def test_karpathy_errors_name_the_file_and_line(tmp_path):
    (tmp_path / "val2014").mkdir()
    _png(tmp_path / "val2014" / "x.png")
    path = _karpathy(tmp_path, [_entry("x.png", "train", "A man ."), _entry("w.png", "train", "B")])
    text = path.read_text().splitlines()
    line = next(i for i, t in enumerate(text, 1) if '"w.png"' in t)
    with pytest.raises(cf.CaptionFileError, match=rf"dataset_coco.json:{line}: .*'val2014/w.png'"):
        cf.read_karpathy(str(path), str(tmp_path))
    path = _karpathy(tmp_path, [_entry("x.png", "train", "A man .", " ")])
    with pytest.raises(cf.CaptionFileError, match=r"json:\d+: images\[0\] \(x.png\): empty sent"):
        cf.read_karpathy(str(path), str(tmp_path))
    path.write_text('{"images": [\n {"filename": "x.png",\n "sentences": [}\n]}')
    with pytest.raises(cf.CaptionFileError, match="dataset_coco.json:3: invalid JSON"):
        cf.read_karpathy(str(path))
    with pytest.raises(ValueError, match="split='training'"):
        cf.read_karpathy(str(_karpathy(tmp_path, [])), split="training")


def test_load_image_names_the_file_with_the_wrong_size_or_channels(tmp_path):
    rgb, grey = _png(tmp_path / "rgb.png", (8, 6)), _png(tmp_path / "grey.png", (8, 6), "L")
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"not an image at all")
    with pytest.raises(cf.ImageError, match=r"rgb.png: size 8x6, expected 4x4; pass resize=True"):
        cf.load_image(str(rgb), 4)
    assert cf.load_image(str(rgb), 4, resize=True).shape == (4, 4, 3)
    with pytest.raises(cf.ImageError, match=r"grey.png: 1 channel\(s\) \(mode L\), expected 3"):
        cf.load_image(str(grey), (8, 6))
    np.testing.assert_allclose(cf.load_image(str(grey), (8, 6), convert=True)[0, 0], 100 / 255)
    assert cf.load_image(str(grey), (8, 6), channels=1).shape == (8, 6, 1)
    with pytest.raises(cf.ImageError, match="broken.jpg: cannot read the image"):
        cf.load_image(str(bad))
    with pytest.raises(cf.ImageError, match=r"2 of 3 images failed:\n.*grey.png.*\n.*broken.jpg"):
        cf.load_images([str(rgb), str(grey), str(bad)], (8, 6))


def test_coco_captions_not_prepared_says_how_to_prepare(tmp_path):
    with pytest.raises(DatasetNotPreparedError, match="tfds build coco_captions"):
        cf.open_coco_captions("val", data_dir=str(tmp_path))


class TinyCocoCaptions(tfds.core.GeneratorBasedBuilder):
    """The features of TFDS coco_captions that the reader uses, on three generated images."""

    name = "rnnlab_tiny_coco_captions"
    VERSION = tfds.core.Version("1.0.0")

    def _info(self):
        features = {
            "image": tfds.features.Image(shape=(None, None, 3)),
            "image/filename": tfds.features.Text(),
            "captions": tfds.features.Sequence({"id": np.int64, "text": tfds.features.Text()}),
        }
        return tfds.core.DatasetInfo(
            builder=self, features=tfds.features.FeaturesDict(features), disable_shuffling=True
        )

    def _split_generators(self, dl_manager):
        return {"val": self._generate_examples()}

    def _generate_examples(self):
        for i in range(3):
            png = io.BytesIO()  # encoded here: tfds would encode arrays with TensorFlow
            Image.new("RGB", (10, 6 + i), (40 * i, 0, 0)).save(png, format="PNG")
            captions = {"id": [2 * i, 2 * i + 1], "text": [f"caption {i}", f"another {i}"]}
            yield i, {"image": png.getvalue(), "image/filename": f"{i}.jpg", "captions": captions}


def test_coco_captions_reads_images_and_captions_without_tensorflow(tmp_path):
    TinyCocoCaptions(data_dir=str(tmp_path), file_format="array_record").download_and_prepare()
    ds = cf.open_coco_captions(
        "val", data_dir=str(tmp_path), name=TinyCocoCaptions.name, image_size=(6, 10)
    )
    assert len(ds) == 3
    image, captions, filename = ds[2]
    assert image.shape == (6, 10, 3) and captions == ["caption 2", "another 2"]
    assert filename == "2.jpg" and abs(image[0, 0, 0] - 80 / 255) < 0.02
    strict = cf.open_coco_captions("val", data_dir=str(tmp_path), name=TinyCocoCaptions.name,
                                   image_size=(6, 10), resize=False)  # fmt: skip
    strict[0]
    with pytest.raises(cf.ImageError, match=r"\[val\] 1.jpg: size 7x10, expected 6x10"):
        strict[1]
