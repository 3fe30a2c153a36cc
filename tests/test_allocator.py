"""The launchers run with glibc malloc keeping freed memory (experiments/_cli.py, MALLOC_ENV)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from experiments import _cli

ROOT = Path(__file__).resolve().parents[1]
NAMES = [*_cli.MALLOC_ENV, "RNNLAB_MALLOC_REEXEC"]
LOG_LINE = "RNNLAB_MALLOC=0 turns this off"

glibc_only = pytest.mark.skipif(not _cli._is_glibc(), reason="the variables are glibc's")

# An experiment entry point in miniature: its __main__ calls _cli.main like every experiment's,
# and its mode reports the environment the process was started with, as glibc read it.
SCRIPT = f"""
import json, sys
sys.path.insert(0, {str(ROOT)!r})
from experiments import _cli

def report(config, workdir):
    with open("/proc/self/environ", "rb") as f:
        pairs = dict(e.split(b"=", 1) for e in f.read().split(b"\\0") if b"=" in e)
    print(json.dumps({{k: pairs.get(k.encode(), b"").decode() or None for k in {NAMES!r}}}))

_cli.main({{"train": report}}, name="long_memory")
"""


def _launch(tmp_path, **env):
    script = tmp_path / "entry.py"
    script.write_text(SCRIPT)
    clean = {k: v for k, v in os.environ.items() if k not in NAMES and k != "RNNLAB_MALLOC"}
    proc = subprocess.run(
        [sys.executable, str(script), f"--workdir={tmp_path / 'run'}"],
        env={**clean, "JAX_PLATFORMS": "cpu", **env},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1]), proc.stderr


@glibc_only
def test_entry_point_reexecs_once_with_malloc_env_and_says_so(tmp_path):
    seen, log = _launch(tmp_path)
    assert {k: seen[k] for k in _cli.MALLOC_ENV} == _cli.MALLOC_ENV
    assert seen["RNNLAB_MALLOC_REEXEC"] == "1"
    assert log.count(LOG_LINE) == 1, log


@glibc_only
def test_rnnlab_malloc_0_opts_out(tmp_path):
    seen, log = _launch(tmp_path, RNNLAB_MALLOC="0")
    assert all(v is None for v in seen.values()), seen
    assert LOG_LINE not in log


def _fake_execve(calls):
    def execve(path, args, env):
        calls.append((path, args, env))
        raise SystemExit(0)

    return execve


@glibc_only
def test_variables_already_set_are_kept_and_need_no_reexec(monkeypatch):
    calls = []
    monkeypatch.setattr(os, "execve", _fake_execve(calls))
    monkeypatch.delenv("RNNLAB_MALLOC_REEXEC", raising=False)
    monkeypatch.delenv("RNNLAB_MALLOC", raising=False)
    for k in _cli.MALLOC_ENV:
        monkeypatch.setenv(k, "7")
    _cli.reexec_with_malloc_env()
    assert calls == []


@glibc_only
def test_reexec_adds_only_missing_variables_and_keeps_the_command_line(monkeypatch):
    calls = []
    monkeypatch.setattr(os, "execve", _fake_execve(calls))
    for k in NAMES:
        monkeypatch.delenv(k, raising=False)
    monkeypatch.delenv("RNNLAB_MALLOC", raising=False)
    monkeypatch.setenv("MALLOC_ARENA_MAX", "4")
    # A replayable command line, as `python path/to/entry.py --flag` gives (under pytest-xdist
    # the worker's own command line is not one).
    monkeypatch.setattr(sys, "argv", [__file__, "--workdir=x"])
    monkeypatch.setattr(sys, "orig_argv", [sys.executable, __file__, "--workdir=x"])
    with pytest.raises(SystemExit):
        _cli.reexec_with_malloc_env()
    ((path, args, env),) = calls
    assert path == sys.executable and args == [sys.executable, *sys.orig_argv[1:]]
    assert env["MALLOC_ARENA_MAX"] == "4" and env["MALLOC_MMAP_MAX_"] == "0"
    assert env["RNNLAB_MALLOC_REEXEC"] == "1"


def test_main_with_explicit_argv_never_reexecs(monkeypatch, tmp_path):
    """Tests call main(argv=...) in-process; that must not replace the pytest process."""
    calls = []
    monkeypatch.setattr(os, "execve", _fake_execve(calls))
    for k in NAMES:
        monkeypatch.delenv(k, raising=False)
    out = _cli.main(
        {"train": lambda config, workdir: "ran"},
        name="long_memory",
        argv=["long_memory", f"--workdir={tmp_path}"],
    )
    assert out == "ran" and calls == []
