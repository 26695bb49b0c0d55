#!/usr/bin/env bash
# Idempotent: installs what the bench commands run beside agentid (docs/performance.md §1).
# As root on Debian: nginx and wrk (openssl is there already). Always: the pinned oidc-provider
# from scripts/bench-peers (npm ci, skipped when the lock file has not changed) into a cache
# directory outside the clone, AGENTID_BENCH_PEERS or ~/.cache/agentid/bench-peers, whose path
# it prints last. A peer that cannot be installed is skipped by the benches with a clear line.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
need=()
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || need+=(nginx)
command -v wrk >/dev/null || need+=(wrk)
command -v openssl >/dev/null || need+=(openssl)
if [ ${#need[@]} -gt 0 ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "bench-deps: installing Debian's ${need[*]}" >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null 2>&1 || {
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
  }
fi
dir="${AGENTID_BENCH_PEERS:-$HOME/.cache/agentid/bench-peers}"
if command -v npm >/dev/null; then
  mkdir -p "$dir"
  stamp="$dir/node_modules/.agentid-stamp"
  want="$(sha256sum "$root/scripts/bench-peers/package-lock.json" | cut -d' ' -f1)"
  if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    cp "$root/scripts/bench-peers/package.json" "$root/scripts/bench-peers/package-lock.json" "$dir/"
    (cd "$dir" && npm ci --no-audit --no-fund --silent)
    echo "$want" > "$stamp"
  fi
else
  echo "bench-deps: npm is not installed; the oidc-provider peer will be skipped" >&2
fi
echo "$dir"
