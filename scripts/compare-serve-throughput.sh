#!/usr/bin/env bash
# Token throughput of one client against eight, kvserve and llama.cpp's
# llama-server side by side on the same machine: a fresh server per run,
# both on the same threads, the same model file, the same conversations
# (the first turn of $CONVERSATIONS records of dev.jsonl, context cut to
# about $CONTEXT_TOKENS tokens, $MAX_TOKENS tokens generated each, greedy,
# ignore_eos). Defaults: tinychat's BF16 GGUF, 16 conversations, 500 and
# 64 (prefill-heavy). Issue 13's decode-heavy load on the 1B body:
#
#   GGUF=/tmp/kvserve-bench/llama-1b-q8_0.gguf CONTEXT_TOKENS=1 MAX_TOKENS=128 \
#   LLAMA_SERVER=/path/to/llama-server scripts/compare-serve-throughput.sh 2 2
#
# (CONTEXT_TOKENS=1 leaves prompts of about 35 tokens: the system prompt,
# the question and the chat template.)
#
#   LLAMA_SERVER=/path/to/llama-server scripts/compare-serve-throughput.sh [threads] [repeats]
#
# llama-server comes from the public ggerganov/llama.cpp repository at build
# 4748, built with Debian's cmake (CPU backend); none of its code is part of
# kvserve. Without LLAMA_SERVER only kvserve is measured.
set -euo pipefail
cd "$(dirname "$0")/.."
threads=${1:-2}
repeats=${2:-2}
gguf=${GGUF:-../shared/models/gguf/tinychat-bf16.gguf}
port=${PORT:-18650}
bin=${KVSERVE:-/tmp/kvserve-compare}
[ -n "${KVSERVE:-}" ] || go build -o "$bin" ./cmd/kvserve
load="--data bench/testdata/dev.jsonl --url http://127.0.0.1:$port --lengths 1000 --context-tokens ${CONTEXT_TOKENS:-500}
      --max-tokens ${MAX_TOKENS:-64} --ignore-eos --turns 1 --conversations ${CONVERSATIONS:-16}"
wait_up() {
	for _ in $(seq 300); do
		curl -sf "http://127.0.0.1:$port/health" >/dev/null 2>&1 && return 0
		sleep 0.1
	done
	echo "server did not come up" >&2
	return 1
}
run() { # name, then the server command line
	local name=$1
	shift
	for rep in $(seq "$repeats"); do
		for c in 1 8; do
			"$@" >/tmp/compare-serve-$name.log 2>&1 &
			local pid=$!
			wait_up
			printf '%-10s rep %d  clients %d  ' "$name" "$rep" "$c"
			"$bin" bench serve $load --concurrency "$c" | grep -E '^wall|^ +all'
			kill "$pid"
			wait "$pid" 2>/dev/null || true
		done
	done
}
grep -m1 'model name' /proc/cpuinfo || true
# The bench GGUFs carry tinychat's tokenizer but no chat template: both
# servers get tinychat's (ChatML).
tmpl=models/tinychat/chat_template.jinja
run kvserve "$bin" serve --model "$gguf" --chat-template "$tmpl" --threads "$threads" --port "$port" --max-batch 8
if [ -n "${LLAMA_SERVER:-}" ]; then
	run llama "$LLAMA_SERVER" -m "$gguf" --jinja --chat-template-file "$tmpl" -t "$threads" -np 8 -c 16384 --port "$port"
fi
