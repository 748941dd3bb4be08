#!/usr/bin/env bash
# The backup and restore drill (docs/operations.md, Restore): a three-member network on this
# machine, chain-a backed up, someone deleted and someone else registered, the backup restored,
# and the deleted face polled on chain-a's /v1/match and chain-b's /v1/query throughout.
# Prints what it observed as JSON; exits 1 when a check fails.
#   deploy/restore-drill.sh [ROOT]            SQLite
#   WATCHNET_DEMO_DATABASE_SERVER=postgresql+psycopg://postgres@127.0.0.1:5432 deploy/restore-drill.sh
set -euo pipefail
root="${1:-$(mktemp -d -t watchnet-restore-drill.XXXXXX)}"
python="${PYTHON:-python3}"
exec "$python" -m node.demo.restore_drill --root "$root"
