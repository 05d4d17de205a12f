#!/usr/bin/env python3
"""Agent-assist latency: for each covered question of eval/calibration_questions.jsonl, a
conversation whose customer asked it, then POST /v1/assist/suggest (streamed) as a live agent
would, N agents at once. Needs a running server that holds eval/calibration_cards.jsonl (run
eval/calibrate_threshold.py first to load them) and an agent or admin key.

    python3 benches/assist_latency.py http://127.0.0.1:8080 [KEY] [--concurrency 1,8] [--n 1]
Prints, per concurrency, p50/p99 of: the context (cards, coaching, escalation: everything but
the generated suggestions, the `context` event), the first suggestion token, and the whole
response; and how often the right card came first. Standard library only."""
import argparse
import json
import statistics
import time
import uuid
from pathlib import Path

from loadgen import pct, post, run_pool, sse

ap = argparse.ArgumentParser()
ap.add_argument("base")
ap.add_argument("key", nargs="?")
ap.add_argument("--concurrency", default="1,8")
ap.add_argument("--n", type=int, default=1, help="suggestions per request")
args = ap.parse_args()
rows = [json.loads(l) for l in (Path(__file__).parent.parent / "eval/calibration_questions.jsonl").read_text().splitlines()]
rows = [r for r in rows if r["card"]]


def assist(row):
    conv = "bench-" + uuid.uuid4().hex
    post(args.base, args.key, f"/v1/conversations/{conv}/turns",
         {"customer_id": conv, "channel": "chat", "role": "customer", "text": row["q"]}).read()
    t0 = time.perf_counter()
    context = first = None
    top = None
    with post(args.base, args.key, "/v1/assist/suggest", {"conversation_id": conv, "n": args.n, "stream": True}) as r:
        for event, data in sse(r):
            if event == "context":
                context = time.perf_counter() - t0
                cards = json.loads(data)["cards"]
                top = cards[0]["title"] if cards else None
            elif event == "delta" and first is None:
                first = time.perf_counter() - t0
    return context, first, time.perf_counter() - t0, top == row["card"]


def ms(x):
    return round(x * 1000)


for n in [int(c) for c in args.concurrency.split(",")]:
    results, _ = run_pool(rows, n, assist)
    ctx = [r[0] for r in results]
    first = [r[1] for r in results if r[1] is not None]
    total = [r[2] for r in results]
    print(json.dumps({
        "concurrency": n, "requests": len(results), "suggestions_each": args.n,
        "right_card_first": sum(r[3] for r in results),
        "context_p50_ms": ms(statistics.median(ctx)), "context_p99_ms": ms(pct(ctx, 99)),
        "first_token_p50_ms": ms(statistics.median(first)) if first else None,
        "first_token_p99_ms": ms(pct(first, 99)) if first else None,
        "total_p50_ms": ms(statistics.median(total)), "total_p99_ms": ms(pct(total, 99)),
    }))
