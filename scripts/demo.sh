#!/usr/bin/env bash
# The main job: short versions of every study (about 10 minutes on 2 CPU cores), then
# runs/demo/report.md with their figures and tables. Extra arguments go to experiments.reproduce.
source "$(dirname "$0")/_env.sh"
exec python -m experiments.reproduce --workdir=runs/demo "$@"
