# Shared by scripts/study.sh and scripts/test.sh: an environment with excite installed, and the Debian
# data packages where this machine can install them (root on Debian, as in CI).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

EXTRAS="${EXCITE_EXTRAS:-all}"
PYTHON="${PYTHON:-python3}"
if [ -z "${VIRTUAL_ENV:-}" ]; then
    if [ ! -x .venv/bin/python ]; then
        "$PYTHON" -m venv .venv || { echo "excite: python -m venv failed; installing into $PYTHON itself"; rm -rf .venv; }
    fi
    if [ -x .venv/bin/python ]; then
        # shellcheck disable=SC1091
        source .venv/bin/activate
        PYTHON=python
    fi
fi
"$PYTHON" -m pip install --quiet --upgrade pip
"$PYTHON" -m pip install --quiet -e ".[${EXTRAS}]"
# MovieLens-100K for the graph comparison ships inside the recbole wheel; its declared dependencies pin
# old packages (ray <= 2.6.3), and only its data file is read, so it is installed without them.
"$PYTHON" -m pip install --quiet --no-deps "recbole==1.2.1" || echo "excite: recbole (MovieLens-100K) not installed"
export PATH="$("$PYTHON" -c 'import sysconfig; print(sysconfig.get_path("scripts"))'):$PATH"

# Real data: Fashion-MNIST and the Colin27 brain MRI with its atlases, from Debian packages.
"$PYTHON" -m excite data --install || echo "excite: some data is missing; 'excite data' says how to get it"
