"""The launchers run glibc malloc on transparent huge pages (experiments/_cli.py, MALLOC_ENV)."""

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


def _run(tmp_path, **env) -> subprocess.CompletedProcess:
    """The launcher of SCRIPT, with the allocator variables cleared and then ``env`` set."""
    script = tmp_path / "entry.py"
    script.write_text(SCRIPT)
    clean = {k: v for k, v in os.environ.items() if k not in NAMES and k != "RNNLAB_MALLOC"}
    return subprocess.run(
        [sys.executable, str(script), f"--workdir={tmp_path / 'run'}"],
        env={**clean, "JAX_PLATFORMS": "cpu", **env},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _launch(tmp_path, **env):
    proc = _run(tmp_path, **env)
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


def test_a_bad_rnnlab_malloc_is_a_one_line_error(tmp_path):
    proc = _run(tmp_path, RNNLAB_MALLOC="yes")
    assert proc.returncode == 2
    assert "error: RNNLAB_MALLOC='yes': expected 0" in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("switch", ["RNNLAB_MALLOC", "RNNLAB_XLA_FLAGS"])
def test_env_sh_rejects_a_bad_switch_before_touching_the_venv(switch):
    """scripts/_env.sh fails on a value the launchers would reject, first thing (before it
    creates or reinstalls the venv, which would need the PYTHON pointing nowhere here)."""
    proc = subprocess.run(
        ["bash", "-c", "source scripts/_env.sh && echo sourced"],
        env={**os.environ, switch: "on", "PYTHON": "/nonexistent/python"},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2 and "sourced" not in proc.stdout
    assert proc.stderr.strip() == f"error: {switch}='on': expected 0 or 1 (the default)"


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
def test_reexec_adds_the_variables_and_keeps_the_command_line(monkeypatch):
    calls = []
    monkeypatch.setattr(os, "execve", _fake_execve(calls))
    for k in NAMES:
        monkeypatch.delenv(k, raising=False)
    monkeypatch.delenv("RNNLAB_MALLOC", raising=False)
    monkeypatch.setenv("MALLOC_ARENA_MAX", "4")  # the user's own allocator settings travel on
    # A replayable command line, as `python path/to/entry.py --flag` gives (under pytest-xdist
    # the worker's own command line is not one).
    monkeypatch.setattr(sys, "argv", [__file__, "--workdir=x"])
    monkeypatch.setattr(sys, "orig_argv", [sys.executable, __file__, "--workdir=x"])
    with pytest.raises(SystemExit):
        _cli.reexec_with_malloc_env()
    ((path, args, env),) = calls
    assert path == sys.executable and args == [sys.executable, *sys.orig_argv[1:]]
    assert {k: env[k] for k in _cli.MALLOC_ENV} == _cli.MALLOC_ENV
    assert env["MALLOC_ARENA_MAX"] == "4" and env["RNNLAB_MALLOC_REEXEC"] == "1"


# Allocates a 64 MiB block (glibc mmaps it) and prints the VmFlags of the mapping that holds it.
PROBE = """
import ctypes, re
libc = ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p
address = libc.malloc(64 << 20)
inside = False
for line in open("/proc/self/smaps"):
    span = re.match(r"([0-9a-f]+)-([0-9a-f]+) ", line)
    if span:
        inside = int(span[1], 16) <= address < int(span[2], 16)
    elif inside and line.startswith("VmFlags:"):
        print(line)
"""


def _vm_flags(**env):
    clean = {k: v for k, v in os.environ.items() if k not in NAMES}
    out = subprocess.run(
        [sys.executable, "-c", PROBE], env={**clean, **env}, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    return out.stdout.split()[1:]


def _glibc_version() -> tuple[int, ...]:
    return tuple(int(n) for n in os.confstr("CS_GNU_LIBC_VERSION").split()[1].split(".")[:2])


@pytest.mark.skipif(
    not _cli._is_glibc() or _glibc_version() < (2, 35) or _cli._thp_mode() != "madvise",
    reason="glibc.malloc.hugetlb (glibc >= 2.35) advises huge pages only in THP mode madvise",
)
def test_malloc_env_advises_huge_pages_for_large_blocks():
    assert "hg" in _vm_flags(**_cli.MALLOC_ENV)  # MADV_HUGEPAGE
    assert "hg" not in _vm_flags()


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
