#!/usr/bin/env bash
# The main job: set up, then train and compare the modules on real data (default: the quick preset).
#   bash scripts/study.sh [--preset quick|full] [--out DIR] [--data PATH] ...
source "$(dirname "$0")/_env.sh"
exec "$PYTHON" -m excite study "$@"
