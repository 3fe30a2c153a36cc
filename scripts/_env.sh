# Sourced by scripts/*.sh: creates .venv if missing and installs rnnlab from the pinned versions.
set -euo pipefail
# rnnlab's on/off switches (below) are 0 or 1, as the Python launchers check them.
for switch in RNNLAB_MALLOC RNNLAB_XLA_FLAGS; do
  case "${!switch:-1}" in
    0 | 1) ;;
    *) echo "error: $switch='${!switch}': expected 0 or 1 (the default)" >&2; return 2 2>/dev/null || exit 2 ;;
  esac
done
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PY="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
# Reinstall only when the pins or the project metadata changed since the last install.
STAMP=.venv/.rnnlab-installed
WANT="$(cat constraints.txt pyproject.toml | sha256sum | cut -d' ' -f1)-${RNNLAB_EXTRAS:-test}"
if [ ! -f "$STAMP" ] || [ "$(cat "$STAMP")" != "$WANT" ]; then
  .venv/bin/python -m pip install --quiet --upgrade pip
  .venv/bin/python -m pip install --quiet -c constraints.txt -e ".[${RNNLAB_EXTRAS:-test}]"
  echo "$WANT" > "$STAMP"
fi
export PATH="$ROOT/.venv/bin:$PATH"
# glibc malloc puts its large blocks on transparent huge pages, so XLA's per-step temporaries are
# page-faulted in 2 MiB at a time, not 4 KiB (see experiments/_cli.py, MALLOC_ENV). RNNLAB_MALLOC=0
# turns it off; a GLIBC_TUNABLES already set is kept.
if [ "${RNNLAB_MALLOC:-1}" = "1" ]; then
  export GLIBC_TUNABLES="${GLIBC_TUNABLES:-glibc.malloc.hugetlb=1}"
fi
# rnnlab's XLA:CPU settings (experiments/_cli.py, XLA_CPU_FLAGS, says why): no Eigen threads
# (matmuls run in YNNPACK; nested parallelism deadlocked less often without them) and XLA's
# multi-output fusion (fewer operations per scan step). A setting of your own that names the
# option is kept; RNNLAB_XLA_FLAGS=0 adds neither.
if [ "${RNNLAB_XLA_FLAGS:-1}" = "1" ]; then
  case "${XLA_FLAGS:-}" in
    *xla_cpu_multi_thread_eigen*) ;;
    *) export XLA_FLAGS="${XLA_FLAGS:+$XLA_FLAGS }--xla_cpu_multi_thread_eigen=false" ;;
  esac
  case "${XLA_FLAGS:-}" in
    *xla_cpu_use_multi_output_fusion*) ;;
    *) export XLA_FLAGS="$XLA_FLAGS --xla_backend_extra_options=xla_cpu_use_multi_output_fusion=true" ;;
  esac
fi
