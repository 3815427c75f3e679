#!/usr/bin/env bash
# Measures kvserve and llama.cpp side by side on the same machine, in
# alternating rounds (llama.cpp, then kvserve, then llama.cpp again …) so
# that both see the same drift in the machine's speed, and prints every
# round and the median of each engine per test with their ratio.
#
#   LLAMA_BENCH=/path/to/llama-bench scripts/compare-llamacpp.sh [threads] [rounds]
#
# Both run tinychat from the same BF16 GGUF file (GGUF=… to change it);
# kvserve also runs its bundled safetensors copy of the same weights.
# llama-bench comes from the public ggerganov/llama.cpp repository at build
# 4748, built with Debian's cmake (CPU backend):
#   cmake -B build -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=ON -DLLAMA_CURL=OFF -DGGML_OPENMP=OFF
#   cmake --build build -j --target llama-bench
# None of its code is part of kvserve.
set -euo pipefail
cd "$(dirname "$0")/.."
threads=${1:-2}
rounds=${2:-5}
gguf=${GGUF:-../shared/models/gguf/tinychat-bf16.gguf}
: "${LLAMA_BENCH:?set LLAMA_BENCH to the llama-bench binary}"
bin=${KVSERVE:-/tmp/kvserve-compare}
[ -n "${KVSERVE:-}" ] || go build -o "$bin" ./cmd/kvserve
rows=$(mktemp)
trap 'rm -f "$rows"' EXIT
echo "== machine"
grep -m1 'model name' /proc/cpuinfo || true
echo "== $rounds rounds, $threads threads, $gguf"
for r in $(seq "$rounds"); do
	# llama-bench's markdown rows end "| pp512 | 2209.09 ± 11.03 |".
	"$LLAMA_BENCH" -m "$gguf" -t "$threads" -p 512,2048 -n 128 -r 1 2>/dev/null |
		awk -F"|" -v r="$r" 'NF > 3 && $(NF-2) ~ /(pp|tg)[0-9]+/ { gsub(/ /, "", $(NF-2)); split($(NF-1), v, " "); print r, "llama.cpp", $(NF-2), v[1] }' >>"$rows"
	for model in "$gguf" models/tinychat; do
		name=kvserve-gguf
		[ "$model" = models/tinychat ] && name=kvserve-safetensors
		"$bin" bench perf --model "$model" --threads "$threads" --prompt-tokens 512,2048 --gen-tokens 128 --repeats 1 |
			awk -v r="$r" -v n="$name" '$1 == "prefill" { print r, n, "pp" $2, $3 } $1 == "decode" { print r, n, "tg" $2, $3 }' >>"$rows"
	done
done
echo "== every round (round engine test tok/s)"
cat "$rows"
echo "== medians"
sort -k2,2 -k3,3 -k4,4n "$rows" | awk '
	{ key = $2 " " $3; vals[key] = vals[key] " " $4; n[key]++ }
	END {
		for (key in vals) {
			split(substr(vals[key], 2), v, " ")
			m = n[key]
			med[key] = (m % 2) ? v[(m + 1) / 2] : (v[m / 2] + v[m / 2 + 1]) / 2
		}
		split("pp512 pp2048 tg128", tests, " ")
		printf "%-8s %10s %14s %6s %20s %6s\n", "test", "llama.cpp", "kvserve-gguf", "ratio", "kvserve-safetensors", "ratio"
		for (i = 1; i <= 3; i++) {
			t = tests[i]; l = med["llama.cpp " t]; g = med["kvserve-gguf " t]; s = med["kvserve-safetensors " t]
			printf "%-8s %10.1f %14.1f %6.2f %20.1f %6.2f\n", t, l, g, g / l, s, s / l
		}
	}'
