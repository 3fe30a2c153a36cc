"""Real captioning data: an image folder with a captions file, or TFDS ``coco_captions``.

Captions files, in the two formats in use:

    Flickr8k ``captions.txt`` (Hodosh et al. 2013; the Kaggle CSV), a header then one caption a
    line, five per image:
        image,caption
        1000268201_693b08cb0e.jpg,A child in a pink dress is climbing up a set of stairs .
    Karpathy's split files ``dataset_coco.json`` / ``dataset_flickr8k.json`` /
    ``dataset_flickr30k.json`` (Karpathy & Fei-Fei 2015):
        {"images": [{"filepath": "val2014", "filename": "COCO_val2014_...jpg",
                     "split": "train" | "val" | "test" | "restval",
                     "sentences": [{"raw": "A man ...", "tokens": ["a", "man", ...]}, ...]}]}

    flickr = read_flickr8k("Flickr8k/captions.txt", "Flickr8k/Images")
    coco = read_karpathy("dataset_coco.json", "coco/images", split="train")
    images = load_images(coco.paths()[:32], (224, 224), resize=True)   # [32, 224, 224, 3]

Errors name the file and the line: a malformed or empty caption, a JSON syntax error, and every
captioned image missing from the folder (with the line that names it; a JSON entry's line is
where its "filename" is written). ``load_image`` names the file it cannot decode or whose size
or channel count is wrong (unless asked to resize or convert).

TFDS ``coco_captions`` (Lin et al. 2014; Chen et al. 2015) is read by random access from its
array_record files, without TensorFlow; preparing it needs TensorFlow and the network, so do it
elsewhere (``tfds build coco_captions --file_format=array_record --data_dir=DIR``) and copy DIR
here. Its code builder imports TensorFlow, so it is opened from the prepared files only.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
from PIL import Image, UnidentifiedImageError

KARPATHY_SPLITS = ("train", "val", "test", "restval")
_MODES = {"L": 1, "LA": 2, "RGB": 3, "RGBA": 4, "CMYK": 4, "I;16": 1, "I": 1, "F": 1}
_MODE_FOR = {1: "L", 3: "RGB", 4: "RGBA"}


class CaptionFileError(ValueError):
    """A problem in a captions file; names the file and, where there is one, the line."""

    def __init__(self, path: str, line: int | None, reason: str):
        where = f"{path}:{line}" if line is not None else str(path)
        super().__init__(f"{where}: {reason}")
        self.path, self.line, self.reason = str(path), line, reason


class ImageError(ValueError):
    """An image that cannot be read, or has the wrong size or channel count; names the file."""


class CaptionedImages(NamedTuple):
    """Images (paths relative to ``image_dir``) with their captions, in file order.

    Attributes:
        image_dir: the folder the file names are relative to ("" if none was given).
        filenames: one per image.
        captions: the captions of each image (five for Flickr8k and COCO).
        splits: Karpathy's split of each image, or None for a file without splits.
        lines: the line of the captions file where each image is first named.
    """

    image_dir: str
    filenames: list[str]
    captions: list[list[str]]
    splits: list[str] | None
    lines: list[int]

    def paths(self) -> list[str]:
        return [os.path.join(self.image_dir, f) for f in self.filenames]

    def pairs(self) -> list[tuple[str, str]]:
        """(image path, caption) for every caption: one training example each."""
        return [(p, c) for p, cs in zip(self.paths(), self.captions) for c in cs]


def _check_missing(path, data: CaptionedImages) -> None:
    missing = [
        (line, name)
        for line, name in zip(data.lines, data.filenames)
        if not os.path.isfile(os.path.join(data.image_dir, name))
    ]
    if missing:
        listed = ", ".join(
            (f"line {line}: " if line else "") + repr(name) for line, name in missing[:10]
        )
        more = f" and {len(missing) - 10} more" if len(missing) > 10 else ""
        raise CaptionFileError(
            path,
            missing[0][0],
            f"{len(missing)} captioned image(s) not found in {data.image_dir!r}: {listed}{more}",
        )


def read_flickr8k(
    captions_path: str, image_dir: str | None = None, *, check_images: bool = True
) -> CaptionedImages:
    """Reads a Flickr8k ``captions.txt`` (CSV ``image,caption``; the header is optional).

    A caption with commas may be quoted or not: everything after the first comma is the caption.

    Args:
        captions_path: the CSV file.
        image_dir: the images folder; with ``check_images``, every named image must be there.

    Raises:
        CaptionFileError: naming the file and line of a malformed row, an empty caption or
            (all of) the missing images.
    """
    order: dict[str, int] = {}
    captions: list[list[str]] = []
    lines: list[int] = []
    try:
        handle = open(captions_path, newline="", encoding="utf-8")
    except OSError as e:
        raise CaptionFileError(captions_path, None, f"cannot open ({e.strerror})") from e
    with handle:
        reader = csv.reader(handle)
        try:
            for row in reader:
                line = reader.line_num
                if not row or (len(row) == 1 and not row[0].strip()):
                    continue  # blank line
                if [c.strip().lower() for c in row] == ["image", "caption"] and not order:
                    continue  # header
                if len(row) < 2:
                    raise CaptionFileError(captions_path, line, f"expected image,caption: {row}")
                name, text = row[0].strip(), ",".join(row[1:]).strip()
                if not name:
                    raise CaptionFileError(captions_path, line, "empty image name")
                if not text:
                    raise CaptionFileError(captions_path, line, f"empty caption for {name!r}")
                if name not in order:
                    order[name] = len(captions)
                    captions.append([])
                    lines.append(line)
                captions[order[name]].append(text)
        except (csv.Error, UnicodeDecodeError) as e:
            raise CaptionFileError(captions_path, reader.line_num + 1, str(e)) from e
    if not order:
        raise CaptionFileError(captions_path, None, "no captions in the file")
    data = CaptionedImages(image_dir or "", list(order), captions, None, lines)
    if image_dir is not None and check_images:
        _check_missing(captions_path, data)
    return data


def _line_of(text: str, name: str, start: int = 0) -> tuple[int | None, int]:
    """The line where the JSON string ``name`` next appears after ``start``, and a new start."""
    for needle in (json.dumps(name, ensure_ascii=False), json.dumps(name)):
        at = text.find(needle, start)
        if at >= 0:
            return text.count("\n", 0, at) + 1, at + 1
    return None, start


def read_karpathy(
    json_path: str,
    image_dir: str | None = None,
    *,
    split: str | Sequence[str] | None = None,
    restval_in_train: bool = True,
    check_images: bool = True,
) -> CaptionedImages:
    """Reads Karpathy's ``dataset_*.json``; paths are ``image_dir/filepath/filename``.

    Args:
        split: keep only these splits ("train", "val", "test", "restval"), or all if None.
        restval_in_train: "train" also takes "restval" (Karpathy's 113k COCO training images).
        check_images: with ``image_dir``, every kept image must be there.

    Raises:
        CaptionFileError: naming the file and line of a JSON error, a malformed entry, an empty
            caption, or (all of) the missing images.
    """
    try:
        with open(json_path, encoding="utf-8") as f:
            text = f.read()
    except (OSError, UnicodeDecodeError) as e:
        raise CaptionFileError(json_path, None, f"cannot read ({e})") from e
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as e:
        raise CaptionFileError(json_path, e.lineno, f"invalid JSON: {e.msg}") from e
    if not isinstance(doc, dict) or not isinstance(doc.get("images"), list):
        raise CaptionFileError(json_path, 1, 'expected {"images": [...]} (a Karpathy split file)')
    keep = None if split is None else {split} if isinstance(split, str) else set(split)
    for s in keep or ():
        if s not in KARPATHY_SPLITS:
            raise ValueError(f"split={s!r}: expected one of {list(KARPATHY_SPLITS)}")
    if keep is not None and restval_in_train and "train" in keep:
        keep.add("restval")
    filenames, captions, splits, lines = [], [], [], []
    cursor = 0
    for i, entry in enumerate(doc["images"]):
        name = entry.get("filename") if isinstance(entry, dict) else None
        line, cursor = _line_of(text, name, cursor) if isinstance(name, str) else (None, cursor)
        if not isinstance(name, str) or not isinstance(entry.get("sentences"), list):
            raise CaptionFileError(json_path, line, f'images[{i}]: needs "filename", "sentences"')
        if keep is not None and entry.get("split") not in keep:
            continue
        texts = []
        for j, s in enumerate(entry["sentences"]):
            raw = s.get("raw") if isinstance(s, dict) else None
            if raw is None and isinstance(s, dict) and isinstance(s.get("tokens"), list):
                raw = " ".join(s["tokens"])
            if not isinstance(raw, str) or not raw.strip():
                raise CaptionFileError(json_path, line, f"images[{i}] ({name}): empty sentence {j}")
            texts.append(raw.strip())
        filenames.append(os.path.join(entry.get("filepath", ""), name))
        captions.append(texts)
        splits.append(entry.get("split", ""))
        lines.append(line)
    data = CaptionedImages(image_dir or "", filenames, captions, splits, lines)
    if image_dir is not None and check_images:
        _check_missing(json_path, data)
    return data


# --- images --------------------------------------------------------------------------------------


def _size(image_size) -> tuple[int, int] | None:
    if image_size is None:
        return None
    return (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)


def load_image(
    path: str,
    image_size: int | tuple[int, int] | None = None,
    *,
    channels: int = 3,
    resize: bool = False,
    convert: bool = False,
) -> np.ndarray:
    """Reads one image with Pillow as float32 in [0, 1].

    Args:
        image_size: expected (height, width) (or one int for square); None accepts any size.
        channels: expected channel count (1 grey, 3 RGB, 4 RGBA).
        resize: resize (bilinear) to image_size instead of refusing another size.
        convert: convert another channel count (e.g. a greyscale photo) instead of refusing it.

    Returns:
        [H, W, channels] float32.

    Raises:
        ImageError: naming the file, when it cannot be decoded or has the wrong size or channels.
    """
    size = _size(image_size)
    if channels not in _MODE_FOR:
        raise ValueError(f"channels={channels!r}: expected one of {sorted(_MODE_FOR)}")
    try:
        with Image.open(path) as image:
            image.load()
            if image.mode == "P":  # a palette: its colours are RGB
                image = image.convert("RGB")
            got = _MODES.get(image.mode)
            if got != channels:
                if not convert:
                    raise ImageError(
                        f"{path}: {got or image.mode} channel(s) (mode {image.mode}), expected "
                        f"{channels}; pass convert=True to convert"
                    )
                image = image.convert(_MODE_FOR[channels])
            if size is not None and (image.height, image.width) != size:
                if not resize:
                    raise ImageError(
                        f"{path}: size {image.height}x{image.width}, expected "
                        f"{size[0]}x{size[1]}; pass resize=True to resize"
                    )
                image = image.resize((size[1], size[0]), Image.BILINEAR)
            array = np.asarray(image, np.float32) / 255.0
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError) as e:
        if isinstance(e, ImageError):
            raise
        raise ImageError(f"{path}: cannot read the image ({e})") from e
    return array.reshape(array.shape[:2] + (channels,))


def load_images(paths: Sequence[str], image_size, **options) -> np.ndarray:
    """[N, H, W, C] from ``load_image`` on each path; one ImageError lists every bad file."""
    images, errors = [], []
    for path in paths:
        try:
            images.append(load_image(path, image_size, **options))
        except ImageError as e:
            errors.append(str(e))
    if errors:
        raise ImageError(f"{len(errors)} of {len(paths)} images failed:\n  " + "\n  ".join(errors))
    return np.stack(images)


# --- TFDS coco_captions --------------------------------------------------------------------------


def _text(value) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


class CocoCaptions:
    """Random access to a prepared TFDS ``coco_captions`` split: ``ds[i]`` gives
    (image [H, W, 3] float32, captions list[str], filename); ``len(ds)``."""

    def __init__(self, data_source, name: str, split: str, image_size=None, resize=True):
        self._data, self.name, self.split = data_source, name, split
        self._size, self._resize = _size(image_size), resize

    def __len__(self) -> int:
        return len(self._data)

    def __getitem__(self, index: int):
        example = self._data[index]
        filename = _text(example.get("image/filename", str(index)))
        image = np.asarray(example["image"])
        if self._size is not None and image.shape[:2] != self._size:
            if not self._resize:
                raise ImageError(
                    f"{self.name}[{self.split}] {filename}: size {image.shape[0]}x"
                    f"{image.shape[1]}, expected {self._size[0]}x{self._size[1]}"
                )
            image = np.asarray(Image.fromarray(image).resize(self._size[::-1], Image.BILINEAR))
        texts = [_text(t) for t in example["captions"]["text"]]
        return image.astype(np.float32) / 255.0, texts, filename


def open_coco_captions(
    split: str = "train",
    *,
    data_dir: str | None = None,
    name: str = "coco_captions",
    image_size: int | tuple[int, int] | None = None,
    resize: bool = True,
) -> CocoCaptions:
    """Opens a prepared ``coco_captions`` split (array_record) through ``tfds``, without TF.

    Args:
        split: "train", "val", "test" or "restval" (Karpathy's splits, as TFDS has them), slices
            included ("val[:500]").
        data_dir: where it was prepared (TFDS's default if None).
        name: the data set ("coco_captions", "coco_captions/2014:1.1.0", or a look-alike).
        image_size, resize: resize every image to image_size (or refuse other sizes).

    Raises:
        rnnlab.data.tfds_source.DatasetNotPreparedError: when no prepared copy is found.
    """
    import tensorflow_datasets as tfds

    from rnnlab.data.tfds_source import DatasetNotPreparedError

    where = data_dir or os.environ.get("TFDS_DATA_DIR", "~/tensorflow_datasets")
    try:
        # From the files: the coco_captions code builder imports TensorFlow.
        builder = tfds.core.read_only_builder.builder_from_files(name, data_dir=data_dir)
    except Exception as e:  # DatasetNotFoundError and friends
        raise DatasetNotPreparedError(
            f"TFDS data set {name!r} is not prepared under {where} ({e.__class__.__name__}). "
            "Where there is network and TensorFlow, run `tfds build coco_captions "
            "--file_format=array_record --data_dir=DIR` and copy DIR here, then pass "
            "data_dir=DIR."
        ) from e
    data = builder.as_data_source(split=split)
    return CocoCaptions(data, name, split, image_size, resize)
