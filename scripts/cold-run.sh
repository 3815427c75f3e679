#!/bin/bash
# Times the README's first command with an empty Go build cache (the module
# cache stays: a fresh clone on a machine with Go has to download modules
# once either way): what a new user waits for on the first run.
#   scripts/cold-run.sh [REV]   (REV: measure another commit, in a temporary worktree)
set -eu
dir=$(cd "$(dirname "$0")/.." && pwd)
if [ $# -gt 0 ]; then
	tmp=$(mktemp -d)
	git -C "$dir" worktree add -q --detach "$tmp/wt" "$1"
	trap 'git -C "$dir" worktree remove --force "$tmp/wt"; rm -rf "$tmp"' EXIT
	dir=$tmp/wt
fi
cache=$(mktemp -d)
cd "$dir"
start=$(date +%s.%N)
GOCACHE=$cache go run ./cmd/kvserve run --chat "// One of the special magic numbers for castle is: 4322492. What is the special magic number for castle mentioned in the provided text?"
end=$(date +%s.%N)
rm -rf "$cache"
echo "cold go run: $(echo "$end - $start" | bc) s on $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
