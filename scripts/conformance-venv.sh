#!/usr/bin/env bash
# Create (or reuse) the Python virtualenv used by the conformance tests that
# drive unmodified Microsoft client libraries (MSAL Python, azure-identity)
# against the agentid STS.
#
#   scripts/conformance-venv.sh            # venv at target/conformance-venv
#   CONFORMANCE_VENV=/tmp/v scripts/conformance-venv.sh
#   PYTHON=/usr/bin/python3.11 scripts/conformance-venv.sh
#
# Idempotent: the pinned tests/conformance/requirements.txt is installed only
# when the stamp file inside the venv does not hold the sha256 of that file.
# The last line printed on stdout is the absolute path of the venv's python.
set -euo pipefail

script_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo_root="$(cd "${script_dir}/.." && pwd)"
requirements="${repo_root}/tests/conformance/requirements.txt"

venv="${CONFORMANCE_VENV:-target/conformance-venv}"
case "${venv}" in
    /*) ;;
    *) venv="${repo_root}/${venv}" ;;
esac
python="${PYTHON:-python3}"
stamp="${venv}/.requirements.sha256"
venv_python="${venv}/bin/python"

log() { echo "conformance-venv: $*" >&2; }

if [ ! -f "${requirements}" ]; then
    log "missing ${requirements}"
    exit 1
fi
want_hash="$(sha256sum "${requirements}" | cut -d' ' -f1)"

if [ -x "${venv_python}" ] && [ -f "${stamp}" ] \
    && [ "$(cat "${stamp}")" = "${want_hash}" ] \
    && "${venv_python}" -c 'import msal, azure.identity, microsoft_agents.authentication.entra_auth_sidecar' >/dev/null 2>&1; then
    log "up to date: ${venv}"
    echo "${venv_python}"
    exit 0
fi

make_venv() {
    rm -rf "${venv}"
    mkdir -p "$(dirname "${venv}")"
    "${python}" -m venv "${venv}"
}

if ! [ -x "${venv_python}" ] || ! "${venv_python}" -m pip --version >/dev/null 2>&1; then
    log "creating venv at ${venv} with $(command -v "${python}" || echo "${python}")"
    if ! make_venv >&2; then
        # Debian splits ensurepip/venv out of python3 (package python3-venv,
        # or python3.X-venv).
        if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
            log "python3 -m venv failed; installing python3-venv with apt-get"
            pyver="$("${python}" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
            export DEBIAN_FRONTEND=noninteractive
            apt-get update -qq >&2 || true
            apt-get install -y -qq python3-venv >&2 \
                || apt-get install -y -qq "python${pyver}-venv" >&2
            make_venv >&2
        else
            log "python3 -m venv failed; install python3-venv (as root: apt-get install -y python3-venv)"
            exit 1
        fi
    fi
fi

log "installing ${requirements}"
rm -f "${stamp}"
"${venv_python}" -m pip install --quiet --disable-pip-version-check \
    --no-input -r "${requirements}" >&2
"${venv_python}" -c 'import msal, azure.identity, microsoft_agents.authentication.entra_auth_sidecar' >&2
echo "${want_hash}" > "${stamp}"
log "ready: ${venv}"
echo "${venv_python}"
