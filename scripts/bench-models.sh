#!/usr/bin/env bash
# Builds the random-weight bench models of issue 13 when they are absent:
# a BF16 GGUF of each real model body (../shared/tools/make_bench_model.py)
# and its Q8_0, Q4_0 and Q4_K_M twins (llama-quantize). Prints their paths.
#
#   LLAMA_CPP=/path/to/llama.cpp scripts/bench-models.sh [outdir] [preset…]
#
# LLAMA_CPP is a llama.cpp source tree (for gguf-py) with its tools built
# in build/bin (see scripts/compare-llamacpp.sh for the build). The files
# (1–2 GB each) stay outside git; outdir defaults to /tmp/kvserve-bench.
# Needs Debian's python3-numpy and python3-sentencepiece.
set -euo pipefail
cd "$(dirname "$0")/.."
: "${LLAMA_CPP:?set LLAMA_CPP to a llama.cpp source tree with build/bin/llama-quantize}"
out=${1:-/tmp/kvserve-bench}
shift || true
presets=${*:-llama-1b qwen-0.5b}
mkdir -p "$out"
for p in $presets; do
	bf16="$out/$p-bf16.gguf"
	if [ ! -s "$bf16" ]; then
		echo "building $bf16" >&2
		PYTHONPATH="$LLAMA_CPP/gguf-py" /usr/bin/python3 ../shared/tools/make_bench_model.py "$bf16.tmp" "$p" >&2
		mv "$bf16.tmp" "$bf16"
	fi
	echo "$bf16"
	for q in Q8_0 Q4_0 Q4_K_M; do
		f="$out/$p-$(echo "$q" | tr 'A-Z' 'a-z').gguf"
		if [ ! -s "$f" ]; then
			echo "quantizing $f" >&2
			"$LLAMA_CPP/build/bin/llama-quantize" "$bf16" "$f.tmp" "$q" 2 >/dev/null 2>&1
			mv "$f.tmp" "$f"
		fi
		echo "$f"
	done
done
