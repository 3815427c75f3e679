#!/usr/bin/env bash
# Runs every fuzz target for a while (FUZZTIME, default 20s) with the
# fuzzguard slow-input guard: a failure names an input that took more than
# 2 s. Issue 18's "slow-input guard" measurement.
#
#   FUZZTIME=20s scripts/fuzz-slow.sh
set -uo pipefail
cd "$(dirname "$0")/.."
t=${FUZZTIME:-20s}
for target in ./gguf:FuzzParse ./model/safetensors:FuzzParse ./model:FuzzParseConfig ./press:FuzzParse \
	./tokenizer:FuzzEncodeDecode ./tokenizer:FuzzParse ./tokenizer/chat:FuzzParse; do
	pkg=${target%%:*}
	fn=${target##*:}
	printf '%-22s %-18s ' "$pkg" "$fn"
	go test "$pkg" -run '^$' -fuzz "^$fn\$" -fuzztime "$t" -parallel 1 2>&1 | grep -E '^(ok|FAIL|---|    )' | head -3 | tr '\n' ' '
	echo
done
