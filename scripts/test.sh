#!/usr/bin/env bash
# Sets everything up on a fresh machine and runs the test suite (fast tests; add `-m slow` for
# the end-to-end runs). Extra arguments go to pytest.
source "$(dirname "$0")/_env.sh"
exec python -m pytest -q "$@"
