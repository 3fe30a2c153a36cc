"""Checkpoints with orbax: a ``state`` item (the whole TrainState) and a JSON ``meta`` item.

    ckpt = Checkpointer(workdir / "checkpoints", max_to_keep=3)
    restored = ckpt.restore(abstract_state, config, resumable=("steps",))   # None if empty
    ckpt.save(step, state, config)       # asynchronous; ckpt.wait() before reading files

``meta`` holds the flat config, library versions and a sha256 of the state, because orbax has no
checksum (a flipped byte restores silently). Restore walks the steps newest first: a checkpoint
that fails to load or to verify is skipped with a warning; one whose config differs from the
run's in a field outside ``resumable`` raises ``ConfigMismatchError`` naming the fields; if the
directory holds checkpoints and none loads, ``CheckpointError``: never a silent fresh start.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, NamedTuple

import jax
import orbax.checkpoint as ocp

from rnnlab.train.state import checksum

log = logging.getLogger(__name__)


class ConfigMismatchError(ValueError):
    """The workdir's checkpoints were made with a different model or data config."""


class CheckpointError(RuntimeError):
    """The workdir holds checkpoints but none of them could be restored."""


class Restored(NamedTuple):
    step: int
    state: Any
    meta: dict


def flatten_config(config) -> dict:
    """A ConfigDict or nested dict as {"a.b": value}, JSON-compatible (tuples become lists)."""
    if hasattr(config, "to_dict"):
        config = config.to_dict()
    flat = {}

    def walk(prefix, value):
        if isinstance(value, dict):
            for k, v in value.items():
                walk(f"{prefix}{k}.", v)
        else:
            flat[prefix[:-1]] = value

    walk("", config)
    return json.loads(json.dumps(flat, default=str))


def config_diff(old: dict, new: dict, resumable=()) -> list[str]:
    """'field: old -> new' for every differing field of two flat configs outside ``resumable``."""
    out = []
    for field in sorted(set(old) | set(new)):
        if field in resumable:
            continue
        a, b = old.get(field, "<absent>"), new.get(field, "<absent>")
        if a != b:
            out.append(f"{field}: {a!r} -> {b!r}")
    return out


def versions() -> dict:
    import flax
    import optax

    import rnnlab

    return {
        "rnnlab": rnnlab.__version__,
        "jax": jax.__version__,
        "flax": flax.__version__,
        "optax": optax.__version__,
        "orbax": ocp.__version__ if hasattr(ocp, "__version__") else "unknown",
    }


class Checkpointer:
    """An orbax CheckpointManager over ``directory`` with the state/meta layout above."""

    def __init__(self, directory, *, max_to_keep: int = 3, asynchronous: bool = True):
        self.directory = Path(directory).resolve()
        options = ocp.CheckpointManagerOptions(
            max_to_keep=max_to_keep,
            save_interval_steps=1,
            enable_async_checkpointing=asynchronous,
            create=True,
        )
        self.manager = ocp.CheckpointManager(
            self.directory, options=options, item_names=("state", "meta")
        )

    def steps(self) -> list[int]:
        return sorted(self.manager.all_steps())

    def save(self, step: int, state, config: dict) -> None:
        """Starts an asynchronous save of ``state`` at ``step`` (computes its checksum first)."""
        meta = {"step": step, "config": config, "versions": versions(), "checksum": checksum(state)}
        self.manager.save(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)
            ),
            force=True,
        )

    def restore(self, abstract_state, config: dict, resumable=()) -> Restored | None:
        """The newest checkpoint that loads and verifies, or None if there are none.

        Args:
            abstract_state: the state's structure as ShapeDtypeStructs (with shardings).
            config: this run's flat config.
            resumable: fields that may differ from the checkpoint's (e.g. "steps").

        Raises:
            ConfigMismatchError: the newest readable checkpoint has another config.
            CheckpointError: there are checkpoints but none restores.
        """
        steps = self.steps()
        failures = []
        for step in reversed(steps):
            try:
                meta = self.manager.restore(
                    step, args=ocp.args.Composite(meta=ocp.args.JsonRestore())
                ).meta
            except Exception as e:  # noqa: BLE001 -- any damage means: try an older one
                failures.append(self._warn(step, "meta", e))
                continue
            diff = config_diff(meta.get("config", {}), config, resumable)
            if diff:
                raise ConfigMismatchError(
                    f"{self.directory} holds checkpoints of a different config; differing "
                    f"fields: {'; '.join(diff)} (use a new --workdir, or change only "
                    f"{sorted(resumable)})"
                )
            try:
                state = self.manager.restore(
                    step,
                    args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract_state)),
                ).state
                if checksum(state) != meta.get("checksum"):
                    raise ValueError("checksum mismatch: the state's bytes changed on disk")
            except Exception as e:  # noqa: BLE001
                failures.append(self._warn(step, "state", e))
                continue
            return Restored(step, state, meta)
        if steps:
            raise CheckpointError(
                f"{self.directory} holds checkpoints {steps} but none could be restored: "
                + "; ".join(failures)
            )
        return None

    def _warn(self, step: int, item: str, e: Exception) -> str:
        message = f"step {step} ({item}): {type(e).__name__}: {str(e).splitlines()[0][:200]}"
        log.warning("checkpoint %s is damaged, falling back to an older one: %s", step, message)
        return message

    def wait(self) -> None:
        self.manager.wait_until_finished()

    def close(self) -> None:
        self.manager.wait_until_finished()
        self.manager.close()
