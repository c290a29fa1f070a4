# Shared by scripts/study.sh and scripts/test.sh: a virtual environment with excite installed, and the
# Debian data packages where this machine can install them.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

EXTRAS="${EXCITE_EXTRAS:-all}"
if [ -z "${VIRTUAL_ENV:-}" ]; then
    if [ ! -x .venv/bin/python ]; then
        python3 -m venv .venv
    fi
    # shellcheck disable=SC1091
    source .venv/bin/activate
fi
python -m pip install --quiet --upgrade pip
python -m pip install --quiet -e ".[${EXTRAS}]"

# Real data: Fashion-MNIST and the Colin27 brain MRI with its atlases, from Debian packages.
excite data --install || echo "excite: data packages not installed; see 'excite data' for how to get them"
