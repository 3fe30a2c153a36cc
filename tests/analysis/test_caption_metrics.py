"""BLEU and CIDEr-D on a two-image example computed by hand, and BLEU-4 against sacreBLEU."""

import math

import numpy as np
import pytest
import sacrebleu

from rnnlab.analysis import caption_metrics as cm

# Two images, two references each, one hypothesis each (punctuation and case are dropped).
REFS = [["A red circle.", "a red square"], ["a blue square", "One big blue square!"]]
HYPS = ["a red, circle", "A blue circle"]


def test_tokenize_lowercases_and_drops_punctuation():
    assert cm.tokenize("A dog's ball, red.  Two:") == ["a", "dog's", "ball", "red", "two"]
    assert cm.tokenize(" , . ") == []


def test_cider_d_on_two_images_by_hand():
    """N = 2 images, so idf = log 2 - log df: 0 for n-grams in both images' references ("a",
    "square"), g = log 2 for those in one (or none). Per image: 10 / (4 n-orders * 2 refs) times
    the sum over refs and orders of the clipped cosine times exp(-delta^2 / 72)."""
    # Image 1, hyp "a red circle" = {a: 0, red: g, circle: g}, |.| = g sqrt2 for every order
    # with weight.  Ref "a red circle": cosine 1 for n = 1, 2, 3.  Ref "a red square":
    # n=1 {red: g, square: 0}: g^2 / (g sqrt2 * g) = 1/sqrt2; n=2 {a red, red square}: 1/2;
    # n=3: 0.  No 4-grams: 0.  Lengths equal.
    image1 = 10 / 8 * ((1 + 1 / math.sqrt(2)) + (1 + 1 / 2) + (1 + 0) + 0)
    # Image 2, hyp "a blue circle" = {a: 0, blue: g, circle: g} ("circle" has df 1; "blue
    # circle" df 0, so idf log 2 too).  Ref "a blue square": n=1 {blue: g}: 1/sqrt2;
    # n=2 {a blue, blue square}: 1/2; n=3: 0.  Ref "one big blue square" (one word longer:
    # penalty exp(-1/72)): n=1 {one, big, blue: g; square: 0}: g^2 / (g sqrt2 * g sqrt3);
    # n=2, 3: no shared n-gram.
    image2 = 10 / 8 * ((1 / math.sqrt(2) + math.exp(-1 / 72) / math.sqrt(6)) + 1 / 2)
    np.testing.assert_allclose(cm.cider_d(REFS, HYPS), (image1 + image2) / 2, rtol=1e-12)


def test_bleu_on_two_images_by_hand():
    # Clipped matches / hypothesis n-grams over the corpus:
    #   1-grams: "a red circle" 3/3, "a blue circle" 2/3 ("circle" in no ref of image 2): 5/6
    #   2-grams: 2/2 + 1/2 ("a blue")                                                   : 3/4
    #   3-grams: 1/1 + 0/1                                                              : 1/2
    #   4-grams: none: p4 = 1e-15 / 1e-9 = 1e-6 (coco-caption's floor, not 0)
    # Closest reference lengths 3 and 3 ("a blue square", not the 4 words): BP = 1.
    p = [5 / 6, 3 / 4, 1 / 2, 1e-6]
    want = {f"bleu{n}": math.prod(p[:n]) ** (1 / n) for n in range(1, 5)}
    got = cm.bleu(REFS, HYPS)
    for name in want:
        np.testing.assert_allclose(got[name], want[name], rtol=1e-8, err_msg=name)


def test_bleu_brevity_penalty_uses_the_closest_reference():
    # "a red" (2 words) against refs of 3 and 5 words: closest 3, BP = exp(1 - 3/2);
    # p1 = p2 = 1.
    got = cm.bleu([["a red circle", "a big red circle here"]], ["a red"])
    np.testing.assert_allclose(got["bleu2"], math.exp(1 - 3 / 2), rtol=1e-8)


def test_bleu4_agrees_with_sacrebleu_without_smoothing():
    refs = [
        [
            "a small red circle to the left of a big blue square",
            "two shapes: a circle and a square",
        ],
        ["there is a little green diamond above a white triangle", "a green diamond on its own"],
    ]
    hyps = [
        "a small red circle left of a big blue square",
        "a little green diamond above a triangle",
    ]
    ours = cm.bleu(refs, hyps)["bleu4"]
    streams = [[" ".join(cm.tokenize(r[j])) for r in refs] for j in range(2)]
    theirs = sacrebleu.corpus_bleu(
        [" ".join(cm.tokenize(h)) for h in hyps], streams, tokenize="none", smooth_method="none"
    )
    np.testing.assert_allclose(ours, theirs.score / 100, rtol=1e-6)


def test_a_perfect_caption_and_bad_input():
    refs = [["a red circle"], ["a blue square"]]
    assert cm.bleu(refs, ["a red circle", "a blue square"])["bleu3"] == pytest.approx(1.0)
    assert cm.score(refs, ["", "a blue square"])["cider_d"] < cm.cider_d(
        refs, ["a red circle", "a blue square"]
    )
    with pytest.raises(ValueError, match="one list per hypothesis"):
        cm.bleu(refs, ["a"])
    with pytest.raises(ValueError, match=r"references\[1\]: expected a non-empty list"):
        cm.cider_d([["a"], "a blue square"], ["a", "b"])
