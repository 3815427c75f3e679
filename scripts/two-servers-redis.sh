#!/usr/bin/env bash
# Two `kvserve serve` processes on one redis-server: server A answers the
# first turn of a few 3 500-token records (computing their contexts, which
# it writes to Redis); server B, a separate process that has computed
# nothing, then answers the same first turns, loading the contexts from
# Redis. Prints both servers' TTFT (kvserve bench serve, greedy, one
# generated token, one client) and B's Redis metrics.
#
#   scripts/two-servers-redis.sh [conversations] [codec]
#
# Needs redis-server on PATH (apt-get install redis-server); starts its own
# on a free port, without persistence, and stops everything it started.
set -euo pipefail
cd "$(dirname "$0")/.."
convs=${1:-2}
codec=${2:-cg1}
bin=${KVSERVE:-/tmp/kvserve-two-servers}
[ -n "${KVSERVE:-}" ] || go build -o "$bin" ./cmd/kvserve
tmp=$(mktemp -d)
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
rport=$(free_port)
pa=$(free_port)
pb=$(free_port)
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
	rm -rf "$tmp"
}
trap cleanup EXIT
redis-server --port "$rport" --bind 127.0.0.1 --save '' --appendonly no --dir "$tmp" >"$tmp/redis.log" 2>&1 &
pids+=($!)
wait_up() {
	for _ in $(seq 600); do
		curl -sf "$1" >/dev/null 2>&1 && return 0
		sleep 0.1
	done
	echo "$1 did not come up" >&2
	return 1
}
for port in "$pa" "$pb"; do
	"$bin" serve --port "$port" --kv-redis "redis://127.0.0.1:$rport/0" --kv-codec "$codec" >"$tmp/serve-$port.log" 2>&1 &
	pids+=($!)
done
wait_up "http://127.0.0.1:$pa/health"
wait_up "http://127.0.0.1:$pb/health"
load="--data bench/testdata/dev.jsonl --lengths 3500 --tasks niah_multikey --conversations $convs --turns 1
      --concurrency 1 --max-tokens 1 --ignore-eos"
echo "== server A (computes the contexts) =="
"$bin" bench serve $load --url "http://127.0.0.1:$pa"
# A writes asynchronously: wait until its Redis bytes stop growing.
last=-1
for _ in $(seq 200); do
	sleep 0.2
	w=$(curl -s "http://127.0.0.1:$pa/metrics" | awk '/^kvserve_kv_tier_written_bytes_total\{tier="redis"\}/ {print $2}')
	[ "$w" = "$last" ] && break
	last=$w
done
echo "A wrote $last bytes to Redis"
echo "== server B (loads them from Redis) =="
"$bin" bench serve $load --url "http://127.0.0.1:$pb"
curl -s "http://127.0.0.1:$pb/metrics" | grep -E '^kvserve_kv_tier_(hits|misses|read_bytes|loaded_tokens)|^kvserve_kv_tier_load_seconds_(sum|count)'
