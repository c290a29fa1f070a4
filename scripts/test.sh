#!/usr/bin/env bash
# The whole test suite: set up, then run pytest on two workers.
#   bash scripts/test.sh [extra pytest arguments]
source "$(dirname "$0")/_env.sh"
exec "$PYTHON" -m pytest -n "${EXCITE_TEST_WORKERS:-2}" "$@"
