#!/usr/bin/env bash
# Browser test of the realtime feed: Knock's official @knocklabs/client in headless
# Chromium against real `hark serve` processes.
#
#   bash tests/realtime/run.sh
#
# Runs once on SQLite (one node) and once on a fresh PostgreSQL database with two nodes
# (the page's socket on one node, the trigger on the other); exits non-zero if either
# run fails.
#   HARK_REALTIME_BACKENDS       "sqlite postgres" (default), or just one of them
#   HARK_TEST_POSTGRES_URL       server to create the scratch database on
#                                (default postgres://postgres@127.0.0.1:5432/test)
#   HARK_REALTIME_SKIP_BUILD=1   use the existing binary without running cargo
#   HARK_CHROMIUM                the browser (default /usr/bin/chromium)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"

# --- Node packages (pinned in package-lock.json) --------------------------------
if [[ ! -d "$here/node_modules/@knocklabs/client" || ! -d "$here/node_modules/playwright-core" ]]; then
  (cd "$here" && npm ci --silent --no-audit --no-fund)
fi

chromium="${HARK_CHROMIUM:-/usr/bin/chromium}"
if [[ ! -x "$chromium" ]]; then
  echo "realtime: $chromium not found (apt-get install -y chromium, or set HARK_CHROMIUM)" >&2
  exit 2
fi
export HARK_CHROMIUM="$chromium"

# --- The server binary ---------------------------------------------------------
export HARK_BIN="${HARK_BIN:-${CARGO_TARGET_DIR:-$root/target}/debug/hark}"
if [[ "${HARK_REALTIME_SKIP_BUILD:-0}" == 1 && -x "$HARK_BIN" ]]; then
  echo "using existing $HARK_BIN"
else
  (cd "$root" && cargo build --bin hark)
fi

run_browser() { # label
  echo "=== realtime browser: $1 ==="
  local rc=0
  (cd "$here" && node --test browser.test.js) || rc=$?
  echo "=== realtime browser: $1: exit $rc ==="
  return "$rc"
}

backends="${HARK_REALTIME_BACKENDS:-sqlite postgres}"
status=0

if [[ " $backends " == *" sqlite "* ]]; then
  rc=0
  HARK_REALTIME_DATABASE_URL="" run_browser "sqlite, one node" || rc=$?
  (( status == 0 )) && status=$rc
fi

if [[ " $backends " == *" postgres "* ]]; then
  admin_url="${HARK_TEST_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/test}"
  db="hark_rt_$(date +%s)_$RANDOM"
  base="${admin_url%%\?*}"
  query=""
  [[ "$admin_url" == *\?* ]] && query="?${admin_url#*\?}"
  db_url="${base%/*}/$db$query"

  psql "$admin_url" -v ON_ERROR_STOP=1 -qc "CREATE DATABASE $db"
  drop_db() { psql "$admin_url" -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null || true; }
  trap drop_db EXIT

  rc=0
  HARK_REALTIME_DATABASE_URL="$db_url" run_browser "postgres, two nodes ($db)" || rc=$?
  (( status == 0 )) && status=$rc
fi

exit "$status"
