"""Subprocess helpers for the training tests."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CACHE = Path(os.environ.get("RNNLAB_TEST_JAX_CACHE", "/tmp/rnnlab-test-jax-cache"))


def env(**extra) -> dict:
    """The subprocess environment: this repo importable, a shared compilation cache (the runs
    compile the same programs; the cache changes no results), plus ``extra``."""
    out = dict(os.environ)
    out["PYTHONPATH"] = str(ROOT) + os.pathsep + out.get("PYTHONPATH", "")
    out["JAX_COMPILATION_CACHE_DIR"] = str(CACHE)
    out["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
    out["JAX_PLATFORMS"] = "cpu"
    out.update(extra)
    return out


def start(args, **extra) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, *args],
        cwd=ROOT,
        env=env(**extra),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def finish(proc: subprocess.Popen, timeout: float = 240) -> tuple[int, str]:
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
    return proc.returncode, out


def driver(workdir, kill="-", *overrides, timeout: float = 240) -> tuple[int, str]:
    return finish(start(["-m", "tests.train._driver", str(workdir), kill, *overrides]), timeout)
