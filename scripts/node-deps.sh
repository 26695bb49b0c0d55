#!/usr/bin/env bash
# Idempotent: installs the pinned Node packages of tests/browser (npm ci, skipped when the lock
# file has not changed) and, as root on Debian, the chromium package the browser tests drive.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
dir="$root/tests/browser"
if [ ! -x /usr/bin/chromium ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "node-deps: installing Debian's chromium" >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null 2>&1 || {
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  }
fi
stamp="$dir/node_modules/.agentid-stamp"
want="$(sha256sum "$dir/package-lock.json" | cut -d' ' -f1)"
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  (cd "$dir" && npm ci --no-audit --no-fund --silent)
  echo "$want" > "$stamp"
fi
echo "$dir/node_modules"
