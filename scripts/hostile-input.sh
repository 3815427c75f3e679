#!/usr/bin/env bash
# The "Done when" numbers of issue 18 (hostile input), against a fresh
# `kvserve serve` of the bundled tinychat on this machine:
#
#   scripts/hostile-input.sh [prompts|embeddings|connections|all] [extra serve flags]
#
# prompts:     six concurrent 15 MB CJK chat prompts and, meanwhile, one
#              small chat request; each one's status and time, the
#              server's peak RSS (VmHWM) and its RSS after.
# embeddings:  a 20 × 4000-token embeddings request (ids), then a smaller
#              accepted one (4 × 4000) with a 16-token completion sent
#              while it runs: statuses and times.
# connections: a connection that sends headers and never the body, and an
#              idle kept-alive one: how long until the server closes each.
#
# Run it once with the defaults, and once with `--max-body 64MiB` to see
# the prompt bound (not the body limit) refuse the 15 MB prompts.
set -euo pipefail
cd "$(dirname "$0")/.."
what=${1:-all}
shift || true
port=${PORT:-18718}
bin=${KVSERVE:-/tmp/kvserve-hostile}
tmp=$(mktemp -d)
trap 'kill $pid 2>/dev/null || true; rm -rf "$tmp"' EXIT
[ -n "${KVSERVE:-}" ] || go build -o "$bin" ./cmd/kvserve
"$bin" serve --port "$port" --threads 2 "$@" >"$tmp/server.log" 2>&1 &
pid=$!
for _ in $(seq 300); do
	curl -sf "http://127.0.0.1:$port/health" >/dev/null 2>&1 && break
	sleep 0.1
done
url=http://127.0.0.1:$port
rss() { awk -v k="$1:" '$1 == k {print $2/1024 " MB"}' /proc/$pid/status; }
echo "server up: RSS $(rss VmRSS)"

prompts() {
	python3 - "$tmp/big.json" <<'PY'
import json, sys
text = "".join(chr(0x4e00 + (i * 7919) % 20000) for i in range(5_000_000))  # 15 MB of CJK
json.dump({"messages": [{"role": "user", "content": text}], "max_tokens": 4}, open(sys.argv[1], "w"), ensure_ascii=False)
PY
	echo "prompt body: $(stat -c %s "$tmp/big.json") bytes"
	curl -s -o /dev/null -w "small request alone: %{http_code} in %{time_total}s\n" -H 'Content-Type: application/json' \
		-d '{"messages":[{"role":"user","content":"hi"}],"max_tokens":8}' "$url/v1/chat/completions"
	for i in 1 2 3 4 5 6; do
		curl -s -o "$tmp/big$i.out" -w "15MB prompt $i: %{http_code} in %{time_total}s\n" \
			-H 'Content-Type: application/json' --data-binary @"$tmp/big.json" "$url/v1/chat/completions" &
	done
	sleep 0.05
	curl -s -o /dev/null -w "small request meanwhile: %{http_code} in %{time_total}s\n" -H 'Content-Type: application/json' \
		-d '{"messages":[{"role":"user","content":"hi"}],"max_tokens":8}' "$url/v1/chat/completions"
	wait $(jobs -p | grep -v "^$pid$") 2>/dev/null || true
	echo "first answer: $(head -c 300 "$tmp/big1.out")"
	echo "peak RSS (VmHWM) $(rss VmHWM), RSS now $(rss VmRSS)"
}

embeddings() {
	python3 - "$tmp" <<'PY'
import json, sys
ids = [(i * 31) % 4000 + 10 for i in range(4000)]
json.dump({"input": [ids] * 20}, open(sys.argv[1] + "/emb20.json", "w"))
json.dump({"input": [ids] * 4}, open(sys.argv[1] + "/emb4.json", "w"))
PY
	curl -s -o "$tmp/emb20.out" -w "20 x 4000-token embeddings: %{http_code} in %{time_total}s\n" -H 'Content-Type: application/json' \
		--data-binary @"$tmp/emb20.json" "$url/v1/embeddings"
	echo "  $(head -c 300 "$tmp/emb20.out")"
	curl -s -o /dev/null -w "4 x 4000-token embeddings: %{http_code} in %{time_total}s\n" -H 'Content-Type: application/json' \
		--data-binary @"$tmp/emb4.json" "$url/v1/embeddings" &
	local emb=$!
	sleep 0.3
	curl -s -o /dev/null -w "16-token completion meanwhile: %{http_code} in %{time_total}s\n" -H 'Content-Type: application/json' \
		-d '{"prompt":"Once upon a time","max_tokens":16,"ignore_eos":true}' "$url/v1/completions"
	wait $emb
}

connections() {
	local t0
	t0=$(date +%s.%N)
	exec 3<>/dev/tcp/127.0.0.1/"$port"
	printf 'POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"prompt":' >&3
	cat <&3 >/dev/null || true
	exec 3<&-
	echo "stalled body: closed after $(echo "$(date +%s.%N) - $t0" | bc)s"
	t0=$(date +%s.%N)
	exec 3<>/dev/tcp/127.0.0.1/"$port"
	printf 'GET /health HTTP/1.1\r\nHost: x\r\n\r\n' >&3
	cat <&3 >/dev/null || true
	exec 3<&-
	echo "idle keep-alive: closed after $(echo "$(date +%s.%N) - $t0" | bc)s"
}

case $what in
prompts | embeddings | connections) $what ;;
all) prompts; embeddings; connections ;;
*) echo "usage: $0 [prompts|embeddings|connections|all] [serve flags]" >&2; exit 2 ;;
esac
