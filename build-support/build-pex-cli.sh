#!/usr/bin/env bash
# Build the pex CLI as a single-file PEX from the `pex` wheel on PyPI, for Pants' [pex-cli].
#   build-pex-cli.sh PYTHON PEX_VERSION OUT_DIR   -> OUT_DIR/pex
# The result is byte-for-byte reproducible. PIP_CONFIG_FILE=/dev/null is injected into the
# PEX so the pip that pex drives ignores the machine-wide pip config (its constraints file
# otherwise makes pip fail with an AssertionError when downloading locked wheels, and its
# extra file:// indexes would leak into lockfiles).
set -euo pipefail
python="$1" version="$2" out="$3"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=build-support/bootstrap-lib.sh
declare -F clean_pip_env >/dev/null || source "${here}/bootstrap-lib.sh"

work="$(mktemp -d)"
trap 'rm -rf "${work}"' EXIT
clean_pip_env "${python}" -m pip download --quiet --no-deps --only-binary=:all: \
  --dest "${work}/wheels" "pex==${version}"
"${python}" -m venv "${work}/venv"
clean_pip_env "${work}/venv/bin/python" -m pip install --quiet --no-index \
  --find-links "${work}/wheels" "pex==${version}"
clean_pip_env PEX_ROOT="${work}/pex_root" "${work}/venv/bin/pex" \
  --no-pypi --find-links "${work}/wheels" "pex==${version}" \
  --console-script pex \
  --inject-env PIP_CONFIG_FILE=/dev/null \
  --python-shebang "/usr/bin/env python3" \
  --output-file "${work}/pex"
mkdir -p "${out}"
mv -f "${work}/pex" "${out}/pex"
chmod 0755 "${out}/pex"
