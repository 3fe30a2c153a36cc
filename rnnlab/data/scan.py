"""SCAN, generated from its grammar (Lake & Baroni 2018, "Generalization without systematicity").

A command in a simplified navigation language maps to a sequence of actions. The grammar:

    C -> S and S | S after S | S
    S -> V twice | V thrice | V
    V -> D opposite | D around | D | U      (the paper writes D[1] opposite D[2]: "walk opposite
                                            left", "turn around right")
    D -> U left | U right | turn left | turn right
    U -> walk | look | run | jump

and the interpretation function:

    [[walk]] = I_WALK, [[look]] = I_LOOK, [[run]] = I_RUN, [[jump]] = I_JUMP
    [[turn left]] = I_TURN_LEFT                        [[u left]] = I_TURN_LEFT [[u]]
    [[turn opposite left]] = I_TURN_LEFT I_TURN_LEFT   [[u opposite left]] = I_TURN_LEFT x2 [[u]]
    [[turn around left]] = I_TURN_LEFT x4              [[u around left]] = (I_TURN_LEFT [[u]]) x4
    [[x twice]] = [[x]] [[x]]                          [[x thrice]] = [[x]] [[x]] [[x]]
    [[x1 and x2]] = [[x1]] [[x2]]                      [[x1 after x2]] = [[x2]] [[x1]]

(the same with right). The grammar yields 34 V, 102 S and 102 + 2 * 102^2 = 20,910 commands,
outputs of 1 to 48 actions. Splits (the paper's experiments 1 to 3):

    simple              a random 80/20 split by ``seed``: 16,728 / 4,182.
    length              train: outputs of at most 22 actions (16,990); test: 24 or more (3,920).
                        No command has exactly 23 actions.
    addprim_jump        train: every command without "jump", plus "jump" alone (13,204);
                        test: every other command with "jump" (7,706).
    addprim_turn_left   train: every command without "turn left", plus "turn left" alone
                        (19,702); test: every other command with "turn left" (1,208).

The published add-primitive training files repeat the primitive's line so that it is about a
tenth of the file (1,467 "jump" lines: 14,670 in all; 2,189 "turn left" lines: 21,890 in all);
``primitive_copies`` reproduces that. Write a split in the published ``IN: ... OUT: ...`` format:

    python -m rnnlab.data.scan --split=length --out=/tmp/scan_length
"""

from __future__ import annotations

import argparse
import itertools
import os
from collections.abc import Sequence

import numpy as np

PRIMITIVES = ("walk", "look", "run", "jump")
DIRECTIONS = ("left", "right")
_MIDDLES = ("opposite", "around")
SPLITS = ("simple", "length", "addprim_jump", "addprim_turn_left")
NUM_COMMANDS = 20_910
MAX_ACTIONS = 48

Pair = tuple[str, str]  # (command, actions), both space-separated


def _verb_phrases() -> list[str]:
    """The 34 V phrases, in grammar order."""
    subjects = (*PRIMITIVES, "turn")
    phrases = []
    for middle in ("opposite", "around"):  # D opposite, D around
        phrases += [f"{u} {middle} {d}" for u in subjects for d in DIRECTIONS]
    phrases += [f"{u} {d}" for u in subjects for d in DIRECTIONS]  # D
    phrases += list(PRIMITIVES)  # U
    return phrases


def commands() -> list[str]:
    """All 20,910 commands, in a fixed order (C -> S, S and S, S after S)."""
    sentences = [f"{v}{r}" for v in _verb_phrases() for r in ("", " twice", " thrice")]
    out = list(sentences)
    for conj in ("and", "after"):
        out += [f"{a} {conj} {b}" for a, b in itertools.product(sentences, sentences)]
    return out


def _interpret_verb(words: Sequence[str]) -> list[str]:
    if len(words) == 1:
        if words[0] not in PRIMITIVES:
            raise ValueError(f"not a SCAN primitive: {words[0]!r}")
        return [f"I_{words[0].upper()}"]
    u, d = words[0], words[-1]
    if d not in DIRECTIONS or len(words) > 3 or (len(words) == 3 and words[1] not in _MIDDLES):
        raise ValueError(f"not a SCAN verb phrase: {' '.join(words)!r}")
    turn = [f"I_TURN_{d.upper()}"]
    act = [] if u == "turn" else _interpret_verb([u])
    if len(words) == 2:  # D
        return turn + act
    if words[1] == "opposite":
        return turn + turn + act
    return (turn + act) * 4  # around


def _interpret_sentence(words: Sequence[str]) -> list[str]:
    repeats = {"twice": 2, "thrice": 3}.get(words[-1], 1)
    verb = words[:-1] if repeats > 1 else words
    return _interpret_verb(verb) * repeats


def interpret(command: str) -> str:
    """The paper's interpretation function: a command to its space-separated actions.

    Args:
        command: e.g. "jump opposite left after walk around left".

    Returns:
        e.g. "I_TURN_LEFT I_WALK I_TURN_LEFT I_WALK ... I_TURN_LEFT I_TURN_LEFT I_JUMP".
    """
    words = command.split()
    for conj in ("and", "after"):
        if conj in words:
            i = words.index(conj)
            first, second = _interpret_sentence(words[:i]), _interpret_sentence(words[i + 1 :])
            return " ".join(first + second if conj == "and" else second + first)
    return " ".join(_interpret_sentence(words))


def dataset() -> list[Pair]:
    """All (command, actions) pairs, in the order of :func:`commands`."""
    return [(c, interpret(c)) for c in commands()]


def _contains(command: str, phrase: str) -> bool:
    return f" {phrase} " in f" {command} "


def split(name: str, *, seed: int = 0, primitive_copies: int = 1) -> dict[str, list[Pair]]:
    """One of the paper's splits.

    Args:
        name: one of ``SPLITS``.
        seed: the permutation of the "simple" split (ignored by the others).
        primitive_copies: how many times the add-primitive splits put the primitive's own line
            in train; 1 gives unique commands, 1467 ("jump") and 2189 ("turn left") the sizes of
            the published files.

    Returns:
        {"train": pairs, "test": pairs}; each list in :func:`commands` order except "simple",
        which is in its permuted order.
    """
    pairs = dataset()
    if name == "simple":
        order = np.random.default_rng(seed).permutation(len(pairs))
        num_train = round(0.8 * len(pairs))
        shuffled = [pairs[i] for i in order]
        return {"train": shuffled[:num_train], "test": shuffled[num_train:]}
    if name == "length":
        lengths = [len(a.split()) for _, a in pairs]
        return {
            "train": [p for p, n in zip(pairs, lengths) if n <= 22],
            "test": [p for p, n in zip(pairs, lengths) if n >= 24],
        }
    if name in ("addprim_jump", "addprim_turn_left"):
        primitive = name.removeprefix("addprim_").replace("_", " ")
        if primitive_copies < 1:
            raise ValueError(f"primitive_copies must be >= 1, got {primitive_copies}")
        without = [p for p in pairs if not _contains(p[0], primitive)]
        held_out = [p for p in pairs if _contains(p[0], primitive) and p[0] != primitive]
        alone = (primitive, interpret(primitive))
        return {"train": without + [alone] * primitive_copies, "test": held_out}
    raise ValueError(f"unknown SCAN split {name!r}; known: {', '.join(SPLITS)}")


def format_line(pair: Pair) -> str:
    """The published line format, ``IN: <command> OUT: <actions>``."""
    return f"IN: {pair[0]} OUT: {pair[1]}"


def parse_line(line: str) -> Pair:
    """Inverse of :func:`format_line`, for reading the published files."""
    body = line.strip()
    if not body.startswith("IN: ") or " OUT: " not in body:
        raise ValueError(f"not a SCAN line (IN: ... OUT: ...): {line!r}")
    command, actions = body[len("IN: ") :].split(" OUT: ", 1)
    return command, actions


def write(splits: dict[str, list[Pair]], out_dir: str) -> list[str]:
    """Writes ``<out_dir>/<split>.txt`` for each split; returns the paths."""
    os.makedirs(out_dir, exist_ok=True)
    paths = []
    for part, pairs in splits.items():
        path = os.path.join(out_dir, f"{part}.txt")
        with open(path, "w", encoding="utf-8") as f:
            f.writelines(format_line(p) + "\n" for p in pairs)
        paths.append(path)
    return paths


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m rnnlab.data.scan", description="Write a SCAN split as train.txt/test.txt."
    )
    parser.add_argument("--split", required=True, choices=SPLITS)
    parser.add_argument("--out", required=True, help="output directory")
    parser.add_argument("--seed", type=int, default=0, help="for the simple split")
    parser.add_argument(
        "--primitive_copies",
        type=int,
        default=1,
        help="copies of the primitive's line in add-primitive train (1467/2189 as published)",
    )
    args = parser.parse_args(argv)
    splits = split(args.split, seed=args.seed, primitive_copies=args.primitive_copies)
    for path, pairs in zip(write(splits, args.out), splits.values()):
        print(f"{path}: {len(pairs)} lines")


if __name__ == "__main__":
    main()
