#!/usr/bin/env python3
"""Merge reports of 'kvserve bench accuracy --out' written by processes that
split the records (by task or length) or the presses: runs of the same press,
ratio, format, setting and retrieval are joined, their records concatenated
and their means recomputed as the harness computes them (retrieval's
per-step means weighted by each part's decode steps).

usage: scripts/merge-accuracy.py OUT.json IN.json...
"""
import json
import sys


def main(out, inputs):
    merged, order, model, data = {}, [], None, None
    for path in inputs:
        rep = json.load(open(path))
        model, data = rep["model"], rep["data"]
        for run in rep["runs"]:
            key = (run["press"], run["ratio"], run["kv_format"], run.get("query_aware", False),
                   run.get("retrieval"), run.get("budget"), run.get("cold"))
            if key not in merged:
                merged[key] = dict(run, records=[], compress_seconds=0.0, seconds=0.0)
                order.append(key)
            m = merged[key]
            ans = [r for r in run["records"] if not r["skipped"]]
            if ans and run["full_kv_bytes"]:
                # the harness's bf16 bytes per prompt token
                m["_per_token"] = round(run["full_kv_bytes"] * len(ans) / sum(r["prompt_tokens"] for r in ans))
            m["records"] += run["records"]
            steps = run.get("steps", 0)
            if steps:
                sums = m.setdefault("_step_sums", {})
                for k, v in run.items():
                    if k.endswith("_per_step") or k == "kv_bytes_resident":
                        sums[k] = sums.get(k, 0.0) + v * steps
                m["_steps"] = m.get("_steps", 0) + steps
            m["compress_seconds"] += run["compress_seconds"]
            m["seconds"] = max(m["seconds"], run["seconds"])
    runs = []
    for key in order:
        m = merged[key]
        answered = [r for r in m["records"] if not r["skipped"]]
        m["total"] = len(answered)
        m["skipped"] = len(m["records"]) - len(answered)
        m["correct"] = sum(r["correct"] for r in answered)
        if answered:
            n = len(answered)
            m["kv_bytes"] = sum(r["kv_bytes"] for r in answered) // n
            m["peak_kv_bytes"] = sum(r.get("peak_kv_bytes", 0) for r in answered) // n
            m["full_kv_bytes"] = sum(r["prompt_tokens"] for r in answered) * m.get("_per_token", 0) // n
        m.pop("_per_token", None)
        if m.get("_steps"):
            m["steps"] = m["_steps"]
            for k, v in m["_step_sums"].items():
                m[k] = v / m["_steps"]
        m.pop("_steps", None)
        m.pop("_step_sums", None)
        m["records"].sort(key=lambda r: (r["task"], r["target_tokens"], r["id"], r["turn"]))
        runs.append(m)
    json.dump({"model": model, "data": data, "runs": runs}, open(out, "w"), indent=1)
    open(out, "a").write("\n")


if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2:])
