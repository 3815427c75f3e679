#!/usr/bin/env bash
# Measures kvserve and llama.cpp side by side on the same machine, one after
# the other, with the same thread count and model (tinychat BF16 GGUF).
#
#   LLAMA_BENCH=/path/to/llama-bench scripts/compare-llamacpp.sh [threads] [repeats]
#
# llama-bench comes from the public ggerganov/llama.cpp repository at build
# 4748, built with Debian's cmake (CPU backend):
#   cmake -B build -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=ON -DLLAMA_CURL=OFF
#   cmake --build build -j --target llama-bench
# None of its code is part of kvserve.
set -euo pipefail
cd "$(dirname "$0")/.."
threads=${1:-2}
repeats=${2:-3}
gguf=${GGUF:-../shared/models/gguf/tinychat-bf16.gguf}
: "${LLAMA_BENCH:?set LLAMA_BENCH to the llama-bench binary}"
go build -o /tmp/kvserve-compare ./cmd/kvserve
echo "== machine"
grep -m1 'model name' /proc/cpuinfo || true
echo "== llama.cpp ($LLAMA_BENCH), $threads threads"
"$LLAMA_BENCH" -m "$gguf" -t "$threads" -p 512,2048 -n 128 -r "$repeats"
echo "== kvserve, $threads threads (safetensors model)"
/tmp/kvserve-compare bench perf --threads "$threads" --prompt-tokens 512,2048 --gen-tokens 128 --repeats "$repeats"
echo "== kvserve, $threads threads ($gguf)"
/tmp/kvserve-compare bench perf --model "$gguf" --threads "$threads" --prompt-tokens 512,2048 --gen-tokens 128 --repeats "$repeats"
