#!/usr/bin/env bash
# Conformance suite: drives a real `hark serve` through Knock's official Python SDK.
#
#   bash tests/conformance/run.sh [pytest args...]
#
# Runs the suite on SQLite, then on a fresh PostgreSQL database, and exits non-zero if
# either run fails.
#   HARK_CONFORMANCE_BACKENDS   "sqlite postgres" (default), or just one of them
#   HARK_CONFORMANCE_DATABASE_URL  if set, run once against this database instead
#   HARK_TEST_POSTGRES_URL      server to create the scratch database on
#                               (default postgres://postgres@127.0.0.1:5432/test)
#   HARK_CONFORMANCE_SKIP_BUILD=1  use the existing binary without running cargo
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
venv="$here/.venv"

# --- Python environment (pinned) --------------------------------------------
if [[ ! -x "$venv/bin/python" ]]; then
  python3 -m venv "$venv"
fi
stamp="$venv/.requirements.installed"
if ! cmp -s "$here/requirements.txt" "$stamp"; then
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$here/requirements.txt"
  cp "$here/requirements.txt" "$stamp"
fi

# --- Node client for the Management API (pinned in mgmt/package-lock.json) ------
if [[ ! -d "$here/mgmt/node_modules/@knocklabs/mgmt" ]]; then
  (cd "$here/mgmt" && npm ci --silent --no-audit --no-fund)
fi

# --- The server binary ---------------------------------------------------------
export HARK_BIN="${HARK_BIN:-${CARGO_TARGET_DIR:-$root/target}/debug/hark}"
if [[ "${HARK_CONFORMANCE_SKIP_BUILD:-0}" == 1 && -x "$HARK_BIN" ]]; then
  echo "using existing $HARK_BIN"
else
  (cd "$root" && cargo build --bin hark)
fi

run_pytest() { # label, then pytest args
  local label="$1"; shift
  echo "=== conformance: $label ==="
  local rc=0
  (cd "$root" && "$venv/bin/python" -m pytest -q tests/conformance "$@") || rc=$?
  # The official Management API client (@knocklabs/mgmt) against its own server.
  (cd "$here/mgmt" && node --test) || rc=$?
  echo "=== conformance: $label: exit $rc ==="
  return "$rc"
}

if [[ -n "${HARK_CONFORMANCE_DATABASE_URL:-}" ]]; then
  rc=0
  run_pytest "database $HARK_CONFORMANCE_DATABASE_URL" "$@" || rc=$?
  exit "$rc"
fi

# --- SQLite, then PostgreSQL ------------------------------------------------------
backends="${HARK_CONFORMANCE_BACKENDS:-sqlite postgres}"
status=0

if [[ " $backends " == *" sqlite "* ]]; then
  rc=0
  run_pytest sqlite "$@" || rc=$?
  (( status == 0 )) && status=$rc
fi

if [[ " $backends " == *" postgres "* ]]; then
  admin_url="${HARK_TEST_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/test}"
  db="hark_conf_$(date +%s)_$RANDOM"
  # Same server and options as admin_url, with the scratch database as the path.
  base="${admin_url%%\?*}"
  query=""
  [[ "$admin_url" == *\?* ]] && query="?${admin_url#*\?}"
  db_url="${base%/*}/$db$query"

  psql "$admin_url" -v ON_ERROR_STOP=1 -qc "CREATE DATABASE $db"
  drop_db() { psql "$admin_url" -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null || true; }
  trap drop_db EXIT

  rc=0
  HARK_CONFORMANCE_DATABASE_URL="$db_url" run_pytest "postgres ($db)" "$@" || rc=$?
  (( status == 0 )) && status=$rc
fi

exit "$status"
