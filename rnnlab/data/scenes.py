"""A generated scene-caption data set: coloured shapes, five paraphrased captions each, no download.

In the spirit of ShapeWorld (Kuhnle & Copestake 2017): each image holds 1 to 4 objects, each a
(size, colour, shape) placed in its own cell of a 3 x 3 grid with a little jitter, drawn from a
seed; a small grammar writes five reference captions per image, as COCO has five (Chen et al.
2015), paraphrasing by word choice ("small"/"little"), object order, the relation used and the
frame ("there is ...", "a picture of ..."):

    a little red circle to the left of a big blue square
    there are three shapes: a small green diamond, a large white triangle and a small red circle

Everything is deterministic per (seed, split, index): ``generate(index, seed=s)`` is a pure
function of its arguments, so a batch is fixed by (seed, step) and resuming is exact.

Every caption parses back (:func:`parse`) into the objects it names, the relations it states
and the count it claims, so a generated caption can be checked for truth against its scene
(:func:`is_true`), not only for n-gram overlap. Relations compare grid columns (left/right) and
rows (above/below); objects share no cell, so every stated relation is unambiguous.

Compositional split: ``held_out`` colour-shape pairs (default red square, blue circle, yellow
triangle) never occur in "train" or "valid" scenes; every "test" scene holds at least one, so
test accuracy measures generalisation to unseen combinations of seen words, not memorisation.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import NamedTuple

import numpy as np

SHAPES = ("circle", "square", "triangle", "diamond")
COLOURS = {
    "red": (0.90, 0.15, 0.15),
    "green": (0.15, 0.75, 0.25),
    "blue": (0.20, 0.35, 0.95),
    "yellow": (0.95, 0.85, 0.15),
    "purple": (0.65, 0.25, 0.80),
    "white": (0.95, 0.95, 0.95),
}
SIZES = ("small", "large")
SIZE_WORDS = {"small": ("small", "little"), "large": ("large", "big")}
HELD_OUT = (("red", "square"), ("blue", "circle"), ("yellow", "triangle"))
SPLITS = {"train": 0, "valid": 1, "test": 2}  # separate random streams per split
RELATIONS = ("left of", "right of", "above", "below")
BACKGROUND = (0.12, 0.12, 0.12)
GRID = 3  # objects sit in distinct cells of a GRID x GRID layout
_COUNT_WORDS = {"two": 2, "three": 3, "four": 4}
_NUMBER = {2: "two", 3: "three", 4: "four"}


class SceneObject(NamedTuple):
    """One object: words plus its grid cell (row, col) and centre (y, x) in [0, 1]."""

    size: str
    colour: str
    shape: str
    row: int
    col: int
    y: float
    x: float

    @property
    def words(self) -> tuple[str, str, str]:
        return self.size, self.colour, self.shape


class Example(NamedTuple):
    """image [H, W, 3] float32 in [0, 1]; five captions; the objects drawn."""

    image: np.ndarray
    captions: tuple[str, ...]
    objects: tuple[SceneObject, ...]


def holds(relation: str, a: SceneObject, b: SceneObject) -> bool:
    """Whether ``a <relation> b`` is true: columns for left/right, rows for above/below."""
    return {
        "left of": a.col < b.col,
        "right of": a.col > b.col,
        "above": a.row < b.row,
        "below": a.row > b.row,
    }[relation]


# --- drawing scenes ------------------------------------------------------------------------------


def _check_held_out(held_out) -> tuple[tuple[str, str], ...]:
    held = tuple(tuple(p) for p in held_out)
    for colour, shape in held:
        if colour not in COLOURS or shape not in SHAPES:
            raise ValueError(
                f"held_out: ({colour!r}, {shape!r}) is not a (colour, shape) pair; colours "
                f"{list(COLOURS)}, shapes {list(SHAPES)}"
            )
    return held


def sample_objects(
    rng: np.random.Generator,
    *,
    split: str = "train",
    held_out: Sequence[tuple[str, str]] = HELD_OUT,
    min_objects: int = 1,
    max_objects: int = 4,
) -> tuple[SceneObject, ...]:
    """Draws a scene's objects; train/valid avoid ``held_out`` pairs, test includes one or more."""
    if split not in SPLITS:
        raise ValueError(f"split={split!r}: expected one of {list(SPLITS)}")
    if not 1 <= min_objects <= max_objects <= 4:
        raise ValueError(
            f"expected 1 <= min_objects <= max_objects <= 4, got {min_objects}, {max_objects}"
        )
    held = set(_check_held_out(held_out))
    pairs = [(c, s) for c in COLOURS for s in SHAPES]
    allowed = [p for p in pairs if p not in held]
    if split == "test" and not held:
        raise ValueError("split='test' is the compositional test split: it needs held_out pairs")
    n = int(rng.integers(min_objects, max_objects + 1))
    chosen = [allowed[i] for i in rng.integers(0, len(allowed), n)]
    if split == "test":  # at least one held-out pair, in a random slot
        held_list = sorted(held)
        chosen[int(rng.integers(0, n))] = held_list[int(rng.integers(0, len(held_list)))]
    cells = rng.permutation(GRID * GRID)[:n]
    objects = []
    for (colour, shape), cell in zip(chosen, cells):
        row, col = divmod(int(cell), GRID)
        jitter = rng.uniform(-0.06, 0.06, 2) / GRID
        y, x = (row + 0.5) / GRID + jitter[0], (col + 0.5) / GRID + jitter[1]
        size = SIZES[int(rng.integers(0, len(SIZES)))]
        objects.append(SceneObject(size, colour, shape, row, col, float(y), float(x)))
    return tuple(objects)


def render(objects: Iterable[SceneObject], image_size: int = 64, supersample: int = 3):
    """Draws the objects on a dark background; anti-aliased by supersampling.

    Returns:
        [image_size, image_size, 3] float32 in [0, 1].
    """
    S = image_size * supersample
    centres = (np.arange(S) + 0.5) / S
    ys, xs = np.meshgrid(centres, centres, indexing="ij")  # [S, S] each
    image = np.empty((S, S, 3), np.float32)
    image[:] = BACKGROUND
    cell = 1.0 / GRID
    for obj in objects:
        r = cell * (0.38 if obj.size == "large" else 0.22)
        dy, dx = ys - obj.y, xs - obj.x
        if obj.shape == "circle":
            inside = dy**2 + dx**2 <= r**2
        elif obj.shape == "square":
            inside = np.maximum(np.abs(dy), np.abs(dx)) <= 0.85 * r
        elif obj.shape == "diamond":
            inside = np.abs(dy) + np.abs(dx) <= r
        else:  # triangle pointing up: apex at y - r, base at y + 0.8 r
            depth = (dy + r) / (1.8 * r)  # 0 at the apex, 1 at the base
            inside = (depth >= 0) & (depth <= 1) & (np.abs(dx) <= depth * r)
        image[inside] = COLOURS[obj.colour]
    k = supersample
    return image.reshape(image_size, k, image_size, k, 3).mean(axis=(1, 3))  # [H, W, 3]


# --- the caption grammar -----------------------------------------------------------------------


def _phrase(obj: SceneObject, rng: np.random.Generator) -> str:
    size = SIZE_WORDS[obj.size][int(rng.integers(0, 2))]
    return f"a {size} {obj.colour} {obj.shape}"


def _true_relation(a: SceneObject, b: SceneObject, rng: np.random.Generator) -> str:
    options = [r for r in RELATIONS if holds(r, a, b)]  # never empty: distinct cells
    return options[int(rng.integers(0, len(options)))]


def _listing(phrases: list[str]) -> str:
    return phrases[0] if len(phrases) == 1 else ", ".join(phrases[:-1]) + " and " + phrases[-1]


def caption(objects: Sequence[SceneObject], template: int, rng: np.random.Generator) -> str:
    """One caption of the scene with grammar frame ``template`` (0 to 4)."""
    order = [objects[i] for i in rng.permutation(len(objects))]
    ps = [_phrase(o, rng) for o in order]
    n = len(order)
    if n == 1:
        frames = ("{0}", "there is {0}", "a picture of {0}", "{0} on its own", "one {1}")
        return frames[template].format(ps[0], ps[0][2:])
    relation = f"{_true_relation(order[0], order[1], rng)}"
    relation = relation if relation in ("above", "below") else "to the " + relation
    pair = f"{ps[0]} {relation} {ps[1]}"
    if n == 2:
        frames = (
            pair,
            f"there is {pair}",
            f"{ps[0]} and {ps[1]}",
            f"a picture of {pair}",
            f"two shapes: {ps[0]} and {ps[1]}",
        )
        return frames[template]
    rest = _listing(ps[2:])
    frames = (
        _listing(ps),
        f"there are {_NUMBER[n]} shapes: {_listing(ps)}",
        f"{pair}, with {rest}",
        f"a picture of {_listing(ps)}",
        f"{_NUMBER[n]} objects: {pair}{' and ' if n == 3 else ', '}{rest}",
    )
    return frames[template]


def generate(
    index: int,
    *,
    seed: int = 0,
    split: str = "train",
    image_size: int = 64,
    held_out: Sequence[tuple[str, str]] = HELD_OUT,
    min_objects: int = 1,
    max_objects: int = 4,
) -> Example:
    """The example at ``index``: a pure function of (seed, split, index) and the options."""
    if split not in SPLITS:
        raise ValueError(f"split={split!r}: expected one of {list(SPLITS)}")
    if not isinstance(index, int | np.integer) or index < 0:
        raise ValueError(f"index must be a non-negative int, got {index!r}")
    rng = np.random.default_rng([seed, SPLITS[split], int(index)])
    objects = sample_objects(
        rng, split=split, held_out=held_out, min_objects=min_objects, max_objects=max_objects
    )
    captions = tuple(caption(objects, t, rng) for t in range(5))
    return Example(render(objects, image_size), captions, objects)


class SceneCaptions:
    """Random access to ``size`` generated examples of one split (``ds[i]``, ``len(ds)``)."""

    def __init__(self, split: str = "train", *, seed: int = 0, size: int = 10_000, **options):
        """options: image_size, held_out, min_objects, max_objects as :func:`generate`."""
        if split not in SPLITS:
            raise ValueError(f"split={split!r}: expected one of {list(SPLITS)}")
        self.split, self.seed, self.size, self.options = split, seed, size, options
        generate(0, seed=seed, split=split, **options)  # checks the options now

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, index: int) -> Example:
        if not 0 <= index < self.size:
            raise IndexError(f"index {index} out of range for {self.size} examples")
        return generate(int(index), seed=self.seed, split=self.split, **self.options)

    def batch(self, indices: Sequence[int], vocab: Vocab, caption_ids: Sequence[int] | None = None):
        """images [B, H, W, 3], tokens [B, T] (<bos> ... <eos> <pad>...), lengths [B].

        caption_ids: which of the five captions per example (default: caption 0).
        """
        examples = [self[i] for i in indices]
        picks = [0] * len(examples) if caption_ids is None else list(caption_ids)
        tokens, lengths = vocab.encode_batch([e.captions[c] for e, c in zip(examples, picks)])
        return np.stack([e.image for e in examples]), tokens, lengths


# --- parsing back and checking truth -------------------------------------------------------------


class Parsed(NamedTuple):
    """objects: (size, colour, shape) per phrase in order; relations: (i, relation, j) meaning
    objects[i] <relation> objects[j]; count: the number claimed ("three shapes"), or None."""

    objects: tuple[tuple[str, str, str], ...]
    relations: tuple[tuple[int, str, int], ...]
    count: int | None


_SIZE_OF = {w: size for size, words in SIZE_WORDS.items() for w in words}
_FILLER = {"there", "is", "are", "picture", "of", "on", "its", "own", "with", "and", ",", ":",
           "shapes", "objects"}  # fmt: skip


def tokenize(text: str) -> list[str]:
    """Lower-cased words, with , : . as their own tokens."""
    return re.findall(r"[a-z0-9']+|[,:.;!?]", text.lower())


def detokenize(words: Sequence[str]) -> str:
    """Joins words, attaching punctuation to the word before it."""
    return re.sub(r" ([,:.;!?])", r"\1", " ".join(words))


def parse(text: str) -> Parsed:
    """Parses a caption of the grammar (or a model's attempt) back into what it states.

    Raises:
        ValueError: naming the word and its position when the caption is not in the grammar.
    """
    words = tokenize(text)
    objects, relations, count, pending = [], [], None, None
    i = 0
    while i < len(words):
        w = words[i]
        if w in ("a", "one") and i + 1 < len(words) and words[i + 1] == "picture":
            i += 2
        elif w in ("a", "an", "one"):
            size, colour, shape = (words[i + 1 : i + 4] + ["", "", ""])[:3]
            if size not in _SIZE_OF or colour not in COLOURS or shape not in SHAPES:
                raise ValueError(f"{text!r}: expected '{w} <size> <colour> <shape>' at word {i}")
            objects.append((_SIZE_OF[size], colour, shape))
            if pending is not None:
                relations.append((len(objects) - 2, pending, len(objects) - 1))
                pending = None
            i += 4
        elif w in _COUNT_WORDS:
            count = _COUNT_WORDS[w]
            i += 1
        elif w in ("above", "below") or words[i : i + 3] in (["to", "the", "left"],
                                                            ["to", "the", "right"]):  # fmt: skip
            if not objects or pending is not None:
                raise ValueError(f"{text!r}: relation {w!r} at word {i} has no object before it")
            pending = w if w in ("above", "below") else words[i + 2] + " of"
            i += 1 if w in ("above", "below") else 4
            if pending.endswith("of") and words[i - 1 : i] != ["of"]:
                raise ValueError(f"{text!r}: expected 'to the {words[i - 2]} of' at word {i - 4}")
        elif w in _FILLER:
            i += 1
        else:
            raise ValueError(f"{text!r}: unexpected word {w!r} at word {i}")
    if pending is not None:
        raise ValueError(f"{text!r}: relation {pending!r} has no object after it")
    return Parsed(tuple(objects), tuple(relations), count)


def is_true(text: str, objects: Sequence[SceneObject]) -> bool:
    """Whether a caption names exactly the scene's objects and every relation and count holds.

    A caption that does not parse is false.
    """
    try:
        parsed = parse(text)
    except ValueError:
        return False
    if Counter(parsed.objects) != Counter(o.words for o in objects):
        return False
    if parsed.count is not None and parsed.count != len(objects):
        return False
    for i, relation, j in parsed.relations:
        first = [o for o in objects if o.words == parsed.objects[i]]
        second = [o for o in objects if o.words == parsed.objects[j]]
        if not any(a is not b and holds(relation, a, b) for a in first for b in second):
            return False
    return True


# --- a word-level vocabulary ---------------------------------------------------------------------


class Vocab:
    """Word <-> id. Ids 0 to 3 are <pad>, <bos>, <eos>, <unk>; the rest sorted words."""

    SPECIALS = ("<pad>", "<bos>", "<eos>", "<unk>")
    PAD, BOS, EOS, UNK = 0, 1, 2, 3

    def __init__(self, words: Iterable[str]):
        self.words = list(self.SPECIALS) + sorted(set(words) - set(self.SPECIALS))
        self.ids = {w: i for i, w in enumerate(self.words)}

    @classmethod
    def from_captions(cls, captions: Iterable[str], min_count: int = 1) -> Vocab:
        """Words seen at least ``min_count`` times in ``captions`` (the rest become <unk>)."""
        counts = Counter(w for c in captions for w in tokenize(c))
        return cls(w for w, n in counts.items() if n >= min_count)

    def __len__(self) -> int:
        return len(self.words)

    def encode(self, text: str, where: str = "caption") -> list[int]:
        """<bos> w_1 ... w_n <eos>. ``where`` names the caption in the error for an empty one."""
        words = tokenize(text)
        if not words:
            raise ValueError(f"{where} is empty: {text!r}")
        return [self.BOS] + [self.ids.get(w, self.UNK) for w in words] + [self.EOS]

    def encode_batch(self, captions: Sequence[str], max_len: int | None = None):
        """tokens [B, T] int32 (padded with 0; truncated to max_len keeping <eos> last) and
        lengths [B] (tokens including <bos> and <eos>)."""
        rows = [self.encode(c, where=f"caption {i}") for i, c in enumerate(captions)]
        if max_len is not None:
            rows = [r if len(r) <= max_len else r[: max_len - 1] + [self.EOS] for r in rows]
        T = max(len(r) for r in rows)
        tokens = np.zeros((len(rows), T), np.int32)
        for b, r in enumerate(rows):
            tokens[b, : len(r)] = r
        return tokens, np.array([len(r) for r in rows], np.int32)

    def decode(self, ids: Iterable[int]) -> str:
        """Words up to the first <eos>, without <bos> and <pad>."""
        words = []
        for i in ids:
            i = int(i)
            if i == self.EOS:
                break
            if i not in (self.PAD, self.BOS):
                words.append(self.words[i])
        return detokenize(words)


def grammar_words() -> list[str]:
    """Every word and punctuation token the caption grammar can produce."""
    frame = "a an one picture of there is are on its own with and to the left right above below"
    words = frame.split() + [",", ":", "shapes", "objects", *_COUNT_WORDS]
    return words + list(_SIZE_OF) + list(COLOURS) + list(SHAPES)


SCENE_VOCAB = Vocab(grammar_words())
