#!/usr/bin/env python3
"""Answer latency under concurrency: POST /v1/answer with the covered questions of
eval/calibration_questions.jsonl, N conversations at once, against a running server that holds
eval/calibration_cards.jsonl (run eval/calibrate_threshold.py first to load them).

    python3 benches/answer_latency.py http://127.0.0.1:8080 [KEY] [--concurrency 1,8] [--rounds 2]
Prints p50/p99 latency, time to first streamed token, and hand-off counts per concurrency, as JSON.
Standard library only."""
import argparse
import json
import statistics
import time
from pathlib import Path

from loadgen import pct, post, run_pool, sse

ap = argparse.ArgumentParser()
ap.add_argument("base")
ap.add_argument("key", nargs="?")
ap.add_argument("--concurrency", default="1,8")
ap.add_argument("--rounds", type=int, default=1)
ap.add_argument("--channel", default="chat")
args = ap.parse_args()
qs = [json.loads(l) for l in (Path(__file__).parent.parent / "eval/calibration_questions.jsonl").read_text().splitlines()]
qs = [q["q"] for q in qs if q["card"]]


def ask(q):
    t0 = time.perf_counter()
    first, done = None, None
    with post(args.base, args.key, "/v1/answer", {"question": q, "channel": args.channel, "stream": True}) as r:
        for event, data in sse(r):
            if event == "delta" and first is None:
                first = time.perf_counter() - t0
            if event == "done":
                done = json.loads(data)
    return time.perf_counter() - t0, first, done["handoff"]


for n in [int(c) for c in args.concurrency.split(",")]:
    work = [qs[i % len(qs)] for i in range(max(n, len(qs) if n == 1 else n) * args.rounds)]
    results, wall = run_pool(work, n, ask)
    lat = [r[0] for r in results]
    ttft = [r[1] for r in results if r[1] is not None]
    print(json.dumps({
        "concurrency": n, "answers": len(results), "handoffs": sum(r[2] for r in results),
        "latency_p50_s": round(statistics.median(lat), 2), "latency_p99_s": round(pct(lat, 99), 2),
        "first_token_p50_s": round(statistics.median(ttft), 2) if ttft else None,
        "first_token_p99_s": round(pct(ttft, 99), 2) if ttft else None,
        "answers_per_min": round(60 * len(results) / wall, 1),
    }))
