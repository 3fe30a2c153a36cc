# Sourced by scripts/*.sh: creates .venv if missing and installs rnnlab from the pinned versions.
set -euo pipefail
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
