"""Length-bucketed batches of (source, target) id sequences, with an exactly resumable position.

Bucketing as in the NMT systems of Sutskever, Vinyals & Le (2014) and Bahdanau, Cho & Bengio
(2015): batching sentences of similar length wastes little compute on padding. Each pair goes
to the bucket of its length, max(len(source), len(target)), by ``boundaries``:

    bucket b holds lengths in (boundaries[b - 1], boundaries[b]]   (the last one: the rest)

and a bucket's batches are padded to the longest source and longest target *in the bucket*
(over the whole data set, not the batch), so there are as many batch shapes as buckets and the
compiled step is traced once per bucket, not once per batch.

Epoch e's plan is a pure function of (seed, e): the pairs are permuted with
``default_rng([seed, e])``, cut into batches of ``batch_size`` within each bucket (in that
order), and the batches permuted again, so long and short batches interleave. The number of
batches per epoch does not depend on e. The loader's whole position is ``{"epoch": e,
"index": i}``, plain ints the train state stores; ``batch_at(position)`` and
``next(position)`` are pure, so a restored position gives exactly the next batch.

Runs on the host (numpy); the batch's arrays are int32 and go to the device with the step.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

Pair = tuple[Sequence[int], Sequence[int]]


class Loader:
    """Deterministic, checkpointable, length-bucketed batches over encoded pairs.

    A batch is a dict of numpy arrays:

        source [B, S] int32, source_lengths [B] int32,
        target [B, T] int32, target_lengths [B] int32,
        index [B] int32: the pair's position in ``pairs`` (-1 for a padding row).

    With ``drop_remainder=False`` (the default) a bucket's last, partial batch is filled with
    padding rows (length 0, index -1) to keep B fixed; a loss must weight rows by
    ``target_lengths > 0``.

    Args:
        pairs: (source_ids, target_ids) pairs, e.g. ``pairs.prepare(...).splits["train"]``.
        batch_size: B.
        seed: fixes every epoch's order.
        boundaries: increasing bucket edges over max(len(source), len(target)); None for one
            bucket.
        shuffle: False keeps data order in each epoch (for evaluation; seed is then unused).
        drop_remainder: drop each bucket's partial batch instead of padding it.
        pad_id: the padding id (``Vocab.pad_id`` is 0).
    """

    def __init__(
        self,
        pairs: Sequence[Pair],
        batch_size: int,
        *,
        seed: int = 0,
        boundaries: Sequence[int] | None = None,
        shuffle: bool = True,
        drop_remainder: bool = False,
        pad_id: int = 0,
    ):
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        boundaries = list(boundaries or [])
        if any(b <= a for a, b in zip(boundaries, boundaries[1:])):
            raise ValueError(f"boundaries must increase, got {boundaries}")
        if not pairs:
            raise ValueError("pairs is empty")
        self.pairs = [
            (np.asarray(s, np.int32).reshape(-1), np.asarray(t, np.int32).reshape(-1))
            for s, t in pairs
        ]
        self.batch_size = batch_size
        self.seed = seed
        self.shuffle = shuffle
        self.drop_remainder = drop_remainder
        self.pad_id = pad_id
        source_lengths = np.array([len(s) for s, _ in self.pairs])
        target_lengths = np.array([len(t) for _, t in self.pairs])
        lengths = np.maximum(source_lengths, target_lengths)
        self.bucket_of = np.searchsorted(np.asarray(boundaries, int), lengths, side="left")
        num_buckets = len(boundaries) + 1
        # Padded widths per bucket, fixed over the data set: one shape per bucket.
        self.widths = []
        for b in range(num_buckets):
            members = self.bucket_of == b
            widths = (
                source_lengths[members].max(initial=0),
                target_lengths[members].max(initial=0),
            )
            self.widths.append(tuple(int(w) for w in widths))
        sizes = np.bincount(self.bucket_of, minlength=num_buckets)
        per_bucket = sizes // batch_size if drop_remainder else -(-sizes // batch_size)
        self.num_batches = int(per_bucket.sum())  # per epoch
        if self.num_batches == 0:
            raise ValueError(
                f"no full batch of {batch_size} in any bucket (sizes {sizes.tolist()}) "
                "with drop_remainder=True"
            )
        self._plan: tuple[int, list[np.ndarray]] = (-1, [])

    def init(self) -> dict:
        """The position of the first batch."""
        return {"epoch": 0, "index": 0}

    def plan(self, epoch: int) -> list[np.ndarray]:
        """Epoch ``epoch``'s batches as arrays of pair indices, from (seed, epoch) alone."""
        if self._plan[0] != epoch:  # a cache of the last epoch's plan, not state
            self._plan = (epoch, self._make_plan(epoch))
        return self._plan[1]

    def _make_plan(self, epoch: int) -> list[np.ndarray]:
        rng = np.random.default_rng([self.seed, epoch])
        order = rng.permutation(len(self.pairs)) if self.shuffle else np.arange(len(self.pairs))
        batches = []
        for b in range(len(self.widths)):
            members = order[self.bucket_of[order] == b]
            stop = len(members) - len(members) % self.batch_size if self.drop_remainder else None
            members = members[:stop]
            batches += [
                members[i : i + self.batch_size] for i in range(0, len(members), self.batch_size)
            ]
        if self.shuffle:
            batches = [batches[i] for i in rng.permutation(len(batches))]
        return batches

    def _check(self, position: dict) -> tuple[int, int]:
        try:
            epoch, index = int(position["epoch"]), int(position["index"])
        except (KeyError, TypeError) as e:
            raise ValueError(
                f"position must be {{'epoch': int, 'index': int}}, got {position!r}"
            ) from e
        if epoch < 0 or not 0 <= index < self.num_batches:
            raise ValueError(
                f"position {position!r} out of range: epoch >= 0, 0 <= index < {self.num_batches}"
            )
        return epoch, index

    def batch_at(self, position: dict) -> dict[str, np.ndarray]:
        """The batch at ``position`` (pure)."""
        epoch, index = self._check(position)
        members = self.plan(epoch)[index]
        source_width, target_width = self.widths[int(self.bucket_of[members[0]])]
        batch = {
            "source": np.full((self.batch_size, source_width), self.pad_id, np.int32),  # [B, S]
            "target": np.full((self.batch_size, target_width), self.pad_id, np.int32),  # [B, T]
            "source_lengths": np.zeros(self.batch_size, np.int32),
            "target_lengths": np.zeros(self.batch_size, np.int32),
            "index": np.full(self.batch_size, -1, np.int32),
        }
        for row, i in enumerate(members):
            source, target = self.pairs[i]
            batch["source"][row, : len(source)] = source
            batch["target"][row, : len(target)] = target
            batch["source_lengths"][row] = len(source)
            batch["target_lengths"][row] = len(target)
            batch["index"][row] = i
        return batch

    def advance(self, position: dict) -> dict:
        """The position after ``position``: the next index, or the next epoch's first."""
        epoch, index = self._check(position)
        if index + 1 < self.num_batches:
            return {"epoch": epoch, "index": index + 1}
        return {"epoch": epoch + 1, "index": 0}

    def next(self, position: dict) -> tuple[dict[str, np.ndarray], dict]:
        """(the batch at ``position``, the position after it), the ``Source.next`` contract."""
        return self.batch_at(position), self.advance(position)

    def epoch(self, epoch: int = 0):
        """Iterates over one epoch's batches, e.g. for evaluation with ``shuffle=False``."""
        for index in range(self.num_batches):
            yield self.batch_at({"epoch": epoch, "index": index})
