"""Caption metrics as the field reports them: BLEU-1..4 and CIDEr-D from pycocoevalcap, no Java.

The COCO caption evaluation code (Chen et al. 2015; ``pycocoevalcap``) scores text that its
PTBTokenizer, a Java program, has tokenised. We tokenise in Python instead (:func:`tokenize`:
lower case, punctuation dropped, as the PTBTokenizer's output after its punctuation filter) and
feed the scorers space-joined words, so nothing needs Java.

BLEU (Papineni et al. 2002), ``pycocoevalcap.bleu.Bleu``: corpus-level modified n-gram
precisions p_n (counts clipped by the most frequent occurrence in any one reference), the
brevity penalty against the *closest* reference length per image,

    BLEU-N = BP * exp(mean_{n <= N} log p_n),   BP = min(1, exp(1 - r / c)),

with p_n = (matches + 1e-15) / (guesses + 1e-9): a corpus without any n-gram of order n (every
hypothesis shorter than n words) gets p_n = 1e-6, not 0 (sacreBLEU would give 0 without
smoothing).

CIDEr-D (Vedantam, Zitnick & Parikh 2015, section 4 "CIDEr-D"), ``pycocoevalcap.cider.Cider``.
Its scorer is the CIDEr-D variant, not the original CIDEr: n-gram counts are clipped and a
Gaussian length penalty applies, no stemming. For candidate c of image i with references S_i
(m of them), n-gram vectors g^n of tf-idf weights,

    g_k(s) = h_k(s) * log(N / max(1, df_k))      (h_k: count of n-gram k in s; N: images scored;
                                                  df_k: images whose references contain k)
    CIDEr-D_n(c, S_i) = 10 / m * sum_j exp(-(l(c) - l(s_ij))^2 / (2 sigma^2))
                        * sum_k min(g_k(c), g_k(s_ij)) g_k(s_ij) / (|g^n(c)| |g^n(s_ij)|)
    CIDEr-D(c, S_i) = mean_{n=1..4} CIDEr-D_n,      sigma = 6,

and the corpus score is the mean over images. The document frequencies come from the
references of the images being scored (the "corpus" mode; the idf is not COCO's), and l(s) is
counted in bigrams (words - 1), which gives the same differences as words for non-empty
sentences. An n-gram seen in no reference gets df = 1 (the max), so the idf log N.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

BLEU_IMPLEMENTATION = "pycocoevalcap 1.2 Bleu (corpus, closest reference length)"
CIDER_IMPLEMENTATION = "pycocoevalcap 1.2 Cider (CIDEr-D: clipped, Gaussian length penalty)"


def tokenize(text: str) -> list[str]:
    """Lower-cased words without punctuation: ``"A dog, running."`` -> ``["a", "dog", "running"]``.

    Apostrophes inside a word stay (``"dog's"``); every other non-alphanumeric character
    separates words.
    """
    return re.findall(r"[a-z0-9]+(?:'[a-z0-9]+)*", text.lower())


def _check(references: Sequence[Sequence[str]], hypotheses: Sequence[str]) -> None:
    if len(references) != len(hypotheses):
        raise ValueError(
            f"references: one list per hypothesis expected, got {len(references)} lists for "
            f"{len(hypotheses)} hypotheses"
        )
    if not hypotheses:
        raise ValueError("hypotheses: nothing to score")
    for i, refs in enumerate(references):
        if isinstance(refs, str) or not refs:
            raise ValueError(
                f"references[{i}]: expected a non-empty list of captions, got {refs!r}"
            )


def _prepare(references, hypotheses):
    gts = {i: [" ".join(tokenize(r)) for r in refs] for i, refs in enumerate(references)}
    res = {i: [" ".join(tokenize(h))] for i, h in enumerate(hypotheses)}
    return gts, res


def bleu(references: Sequence[Sequence[str]], hypotheses: Sequence[str]) -> dict[str, float]:
    """Corpus BLEU-1..4 in [0, 1]: {"bleu1": ..., "bleu4": ...}.

    Args:
        references: per image, its reference captions (raw text; tokenised here).
        hypotheses: per image, one generated caption.
    """
    from pycocoevalcap.bleu.bleu import Bleu

    _check(references, hypotheses)
    scores, _ = Bleu(4).compute_score(*_prepare(references, hypotheses), verbose=0)
    return {f"bleu{n + 1}": float(s) for n, s in enumerate(scores)}


def cider_d(references: Sequence[Sequence[str]], hypotheses: Sequence[str]) -> float:
    """Corpus CIDEr-D (the mean over images; 10 is a perfect score on one reference)."""
    from pycocoevalcap.cider.cider import Cider

    _check(references, hypotheses)
    score, _ = Cider().compute_score(*_prepare(references, hypotheses))
    return float(score)


def score(references: Sequence[Sequence[str]], hypotheses: Sequence[str]) -> dict[str, float]:
    """BLEU-1..4 and CIDEr-D together: {"bleu1", "bleu2", "bleu3", "bleu4", "cider_d"}."""
    return bleu(references, hypotheses) | {"cider_d": cider_d(references, hypotheses)}
