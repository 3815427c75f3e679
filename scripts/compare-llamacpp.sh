#!/usr/bin/env bash
# Measures kvserve and llama.cpp side by side on the same machine and the
# same GGUF files, in alternating rounds (llama.cpp, then kvserve, then
# llama.cpp again …) so that both see the same drift in the machine's
# speed, and prints every round and the median of each engine per test
# with their ratio.
#
#   LLAMA_CPP=/path/to/llama.cpp scripts/compare-llamacpp.sh [threads] [rounds] [model…]
#
# Models: tinychat (the bundled BF16 GGUF), and llama-1b and qwen-0.5b,
# random-weight GGUFs of Llama-3.2-1B's and Qwen2.5-0.5B's bodies in BF16,
# Q8_0, Q4_0 and Q4_K_M that scripts/bench-models.sh builds when absent
# (in $BENCH_MODELS, default /tmp/kvserve-bench). Default: llama-1b
# qwen-0.5b. FORMATS (default "bf16 q8_0 q4_0 q4_k_m") picks the files,
# PROMPT and GEN (default 512 and 128) the test sizes. kvserve runs with
# its default numerics for GGUF files (fast); NUMERICS=exact changes it.
#
# llama.cpp comes from the public ggerganov/llama.cpp repository at build
# 4748 (b4747-1-gc392e5094), built with Debian's cmake (CPU backend):
#   cmake -B build -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=ON -DLLAMA_CURL=OFF -DGGML_OPENMP=OFF
#   cmake --build build -j --target llama-bench llama-server llama-quantize
# None of its code is part of kvserve.
set -euo pipefail
cd "$(dirname "$0")/.."
threads=${1:-2}
rounds=${2:-3}
shift 2 || shift $#
models=${*:-llama-1b qwen-0.5b}
formats=${FORMATS:-bf16 q8_0 q4_0 q4_k_m}
prompt=${PROMPT:-512}
gen=${GEN:-128}
: "${LLAMA_CPP:?set LLAMA_CPP to a llama.cpp tree with build/bin/llama-bench}"
bench_models=${BENCH_MODELS:-/tmp/kvserve-bench}
bin=${KVSERVE:-/tmp/kvserve-compare}
[ -n "${KVSERVE:-}" ] || go build -o "$bin" ./cmd/kvserve
files=()
for m in $models; do
	if [ "$m" = tinychat ]; then
		files+=(../shared/models/gguf/tinychat-bf16.gguf)
		continue
	fi
	LLAMA_CPP=$LLAMA_CPP scripts/bench-models.sh "$bench_models" "$m" >/dev/null
	for f in $formats; do files+=("$bench_models/$m-$f.gguf"); done
done
rows=$(mktemp)
trap 'rm -f "$rows"' EXIT
echo "== machine"
grep -m1 'model name' /proc/cpuinfo || true
"$bin" bench perf --threads "$threads" --prompt-tokens 64 --gen-tokens 4 --repeats 1 | grep '^machine' || true
echo "== $rounds rounds, $threads threads, prefill $prompt, decode $gen, numerics ${NUMERICS:-auto}"
for r in $(seq "$rounds"); do
	for f in "${files[@]}"; do
		name=$(basename "$f" .gguf)
		# llama-bench's markdown rows end "| pp512 | 2209.09 ± 11.03 |".
		"$LLAMA_CPP/build/bin/llama-bench" -m "$f" -t "$threads" -p "$prompt" -n "$gen" -r 1 2>/dev/null |
			awk -F"|" -v r="$r" -v m="$name" 'NF > 3 && $(NF-2) ~ /(pp|tg)[0-9]+/ { gsub(/ /, "", $(NF-2)); split($(NF-1), v, " "); print r, m, "llama.cpp", $(NF-2), v[1] }' >>"$rows"
		"$bin" bench perf --model "$f" --threads "$threads" --prompt-tokens "$prompt" --gen-tokens "$gen" --repeats 1 --numerics "${NUMERICS:-auto}" |
			awk -v r="$r" -v m="$name" '$1 == "prefill" { print r, m, "kvserve", "pp" $2, $3 } $1 == "decode" { print r, m, "kvserve", "tg" $2, $3 } $1 == "peak" { print r, m, "kvserve", "rssMB", $3 }' >>"$rows"
	done
done
echo "== every round (round model engine test tok/s)"
cat "$rows"
echo "== medians"
sort -k2,2 -k3,3 -k4,4 -k5,5n "$rows" | awk -v pp="pp$prompt" -v tg="tg$gen" '
	{ key = $2 " " $3 " " $4; vals[key] = vals[key] " " $5; n[key]++; models[$2] = 1 }
	END {
		for (key in vals) {
			split(substr(vals[key], 2), v, " ")
			m = n[key]
			med[key] = (m % 2) ? v[(m + 1) / 2] : (v[m / 2] + v[m / 2 + 1]) / 2
		}
		printf "%-20s %-7s %10s %10s %6s\n", "model", "test", "llama.cpp", "kvserve", "ratio"
		for (model in models) {
			for (i = 1; i <= 2; i++) {
				t = (i == 1) ? pp : tg
				l = med[model " llama.cpp " t]; k = med[model " kvserve " t]
				printf "%-20s %-7s %10.1f %10.1f %6.2f\n", model, t, l, k, (l > 0) ? k / l : 0
			}
			printf "%-20s %-7s %10s %10.0f\n", model, "rss MB", "", med[model " kvserve rssMB"]
		}
	}' | sort -s -k1,1
