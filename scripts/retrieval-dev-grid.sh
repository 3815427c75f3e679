#!/bin/bash
# Runs the retrieval accuracy grid on dev.jsonl — five tasks (kv_retrieval
# left out) × three lengths × 16 records, two turns, bf16 — as one process
# per task × length (15 processes: made for a 16-core machine), then joins
# them:  KVSERVE=path/to/kvserve OUT=dir scripts/retrieval-dev-grid.sh
#        scripts/merge-accuracy.py bench/results/retrieval-dev-full.json dir/r/*.json
#        kvserve bench summary --result bench/results/retrieval-dev-full.json
set -u
B="${KVSERVE:-kvserve}"
mkdir -p $OUT/r
for t in niah_single niah_multikey niah_multivalue variable_tracking code_signature; do
  for l in 1000 2000 3500; do
    $B bench accuracy --model models/tinychat --data bench/testdata/dev.jsonl --tasks $t --lengths $l --turns 2 --threads 1 --kv-format bf16 \
      --retrieval none,oracle,quest,tokenselect,a2ats --budget 1/8,1/16 --out $OUT/r/$t-$l.json > $OUT/r/$t-$l.txt 2> $OUT/r/$t-$l.err &
  done
done
wait
ls -la $OUT/r
