#!/usr/bin/env bash
# Sets everything up on a fresh machine and runs the test suite: the fast tests, spread over
# the machine's cores (pytest-xdist). Arguments go to pytest instead of the defaults, e.g.
#   scripts/test.sh tests/test_cells.py -x      # one file, one process
#   scripts/test.sh -m slow                     # the end-to-end runs of minutes
source "$(dirname "$0")/_env.sh"
if [ "$#" -eq 0 ]; then
  set -- -n "${RNNLAB_TEST_WORKERS:-auto}" --durations=15
fi
exec python -m pytest -q "$@"
