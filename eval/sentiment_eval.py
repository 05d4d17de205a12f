#!/usr/bin/env python3
"""Sentiment accuracy on eval/sentiment_turns.jsonl (customer-service turns written for this
project, English and Chinese, never used in training) against a running server.

    python3 eval/sentiment_eval.py http://127.0.0.1:8080 [API_KEY]
Prints per-language accuracy, the confusion matrix and sentences/s as JSON; exits 1 when an
accuracy is under its floor in eval/floors.json. Standard library only."""
import json
import sys
import time
import urllib.request
from pathlib import Path

base = sys.argv[1].rstrip("/") if len(sys.argv) > 1 else "http://127.0.0.1:8080"
key = sys.argv[2] if len(sys.argv) > 2 else None
here = Path(__file__).parent
rows = [json.loads(l) for l in (here / "sentiment_turns.jsonl").read_text().splitlines() if l.strip()]


def classify(texts):
    req = urllib.request.Request(base + "/v1/sentiment", data=json.dumps({"texts": texts}).encode(), method="POST")
    req.add_header("Content-Type", "application/json")
    if key:
        req.add_header("Authorization", "Bearer " + key)
    with urllib.request.urlopen(req) as r:
        return json.load(r)["results"]


started = time.time()
got = []
for i in range(0, len(rows), 32):
    got += classify([r["text"] for r in rows[i:i + 32]])
took = time.time() - started
labels = ["negative", "neutral", "positive"]
report = {"sentences": len(rows), "sentences_per_s": round(len(rows) / took, 1)}
for lang in ["en", "zh"]:
    pairs = [(r["label"], g["label"]) for r, g in zip(rows, got) if r["lang"] == lang]
    acc = sum(a == b for a, b in pairs) / len(pairs)
    confusion = {t: {p: sum(1 for a, b in pairs if a == t and b == p) for p in labels} for t in labels}
    # Negative vs not: what escalation reads.
    neg = sum((a == "negative") == (b == "negative") for a, b in pairs) / len(pairs)
    report[lang] = {"accuracy": round(acc, 3), "negative_vs_rest_accuracy": round(neg, 3), "n": len(pairs), "confusion": confusion}
print(json.dumps(report, indent=2, ensure_ascii=False))
floors = json.loads((here / "floors.json").read_text()).get("sentiment", {}) if (here / "floors.json").exists() else {}
bad = [f"{k} {report[l][m]} < {v}" for k, v in floors.items() for l, m in [k.split(".", 1)] if report[l][m] < v]
if bad:
    print("below floor: " + "; ".join(bad), file=sys.stderr)
    sys.exit(1)
