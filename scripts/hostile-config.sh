#!/usr/bin/env bash
# Issue 18: hostile config.json values, each loaded by `kvserve run` from a
# copy of the bundled tinychat (weights linked, config.json edited); prints
# the error, the wall time and the peak RSS (GNU time's %M).
#
#   scripts/hostile-config.sh
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${KVSERVE:-/tmp/kvserve-hostile}
[ -n "${KVSERVE:-}" ] || go build -o "$bin" ./cmd/kvserve
src=$(pwd)/models/tinychat
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for edit in 'head_dim=-2' 'head_dim=2**31' 'head_dim=2**40' 'num_hidden_layers=10**9'; do
	dir=$tmp/m
	rm -rf "$dir" && mkdir -p "$dir"
	for f in "$src"/*; do ln -s "$f" "$dir/"; done
	rm "$dir/config.json"
	python3 - "$src/config.json" "$dir/config.json" "$edit" <<'PY'
import json, sys
c = json.load(open(sys.argv[1]))
k, v = sys.argv[3].split("=")
c[k] = eval(v)
json.dump(c, open(sys.argv[2], "w"))
PY
	out=$( { /usr/bin/time -f "%e s, peak RSS %M KB" "$bin" run --model "$dir" --prompt hi --max-tokens 1; } 2>&1 || true)
	printf '%-24s %s\n' "$edit" "$(echo "$out" | tr '\n' ' ' | sed 's/Command exited with non-zero status [0-9]* //')"
done
