#!/usr/bin/env bash
# The certified privacy organisation's manifest round trip, with the real CLI:
# three key holders, a manifest from docs/examples/group.toml, two of three sign, a node-style
# verification against the pinned root key ids, then a suspension (version 2) and a refused
# rollback to version 1.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
watchnet="${WATCHNET:-$here/.venv/bin/watchnet}"
dir="${1:-$(mktemp -d)}"
mkdir -p "$dir"
cd "$dir"
step() { printf '\n== %s\n' "$*"; }

step "three key holders of the organisation each create a key"
for i in 1 2 3; do "$watchnet" gov keygen --out "org$i.key"; done
roots=()
for i in 1 2 3; do roots+=(--root-keyid "$("$watchnet" gov keyid "org$i.pub")"); done

step "version 1 from the group description, threshold 2 of 3"
"$watchnet" gov create --description "$here/docs/examples/group.toml" \
  --signer org1.pub --signer org2.pub --signer org3.pub --threshold 2 --out manifest-v1.json

step "one signature is not enough"
"$watchnet" gov sign manifest-v1.json --key org1.key
if "$watchnet" gov verify manifest-v1.json "${roots[@]}"; then echo "unexpected: accepted" >&2; exit 1; fi

step "a second key holder signs: accepted"
"$watchnet" gov sign manifest-v1.json --key org3.key
"$watchnet" gov verify manifest-v1.json "${roots[@]}"

step "suspend chain-b: version 2, signed by two key holders, accepted as the successor of version 1"
"$watchnet" gov member suspend manifest-v1.json chain-b --out manifest-v2.json
"$watchnet" gov sign manifest-v2.json --key org1.key
"$watchnet" gov sign manifest-v2.json --key org2.key
"$watchnet" gov verify manifest-v2.json --trusted manifest-v1.json

step "a node that trusts version 2 refuses the rolled-back version 1"
if "$watchnet" gov verify manifest-v1.json --trusted manifest-v2.json; then echo "unexpected: accepted" >&2; exit 1; fi

step "the joint-use notice generated from version 2"
"$watchnet" gov notice manifest-v2.json --lang en
printf '\nfiles are in %s\n' "$dir"
