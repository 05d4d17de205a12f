#!/usr/bin/env python3
"""How well "about the same issue" (the repeated-contacts rule of the escalation policy) is told
apart, on eval/same_issue_pairs.jsonl: pairs of customer openings written for this project,
English and Chinese, same issue or not (the "not" ones mostly on the same product, the hard
case).

    python3 eval/same_issue_eval.py http://127.0.0.1:8080 [API_KEY] [--head PATH]

It computes what the server computes: the embedder's query vectors (`/v1/embeddings`), minus the
per-language center stored in the signal heads, at unit length, and their cosine. Prints the
cosines, the accuracy at the configured threshold (0.35, `[escalation] same_issue_similarity`)
and the best threshold on this set as JSON; exits 1 under the floor in eval/floors.json.
Standard library only."""
import json
import math
import os
import sys
import urllib.request
from pathlib import Path

args = [a for a in sys.argv[1:]]
head_path = None
if "--head" in args:
    i = args.index("--head")
    head_path = args[i + 1]
    del args[i:i + 2]
base = args[0].rstrip("/") if args else "http://127.0.0.1:8080"
key = args[1] if len(args) > 1 else None
models = os.environ.get("KEFU_MODELS_DIR", os.path.expanduser("~/.cache/kefu/models"))
head = json.loads(Path(head_path or f"{models}/heads/signals-v1-e5-small.json").read_text())
here = Path(__file__).parent
rows = [json.loads(l) for l in (here / "same_issue_pairs.jsonl").read_text().splitlines() if l.strip()]
THRESHOLD = 0.35


def embed(texts):
    req = urllib.request.Request(base + "/v1/embeddings", method="POST",
                                 data=json.dumps({"model": head["embedder"], "input": texts}).encode())
    req.add_header("Content-Type", "application/json")
    if key:
        req.add_header("Authorization", "Bearer " + key)
    with urllib.request.urlopen(req) as r:
        return [d["embedding"] for d in json.load(r)["data"]]


def centered(v, text):
    # The server's language detection: any Han character makes a text Chinese.
    lang = "zh" if any("\u4e00" <= c <= "\u9fff" for c in text) else "en"
    c = head["centers"].get(lang, [0.0] * len(v))
    w = [a - b for a, b in zip(v, c)]
    n = math.sqrt(sum(a * a for a in w)) or 1.0
    return [a / n for a in w]


cos = []
for r in rows:
    va, vb = embed([r["a"], r["b"]])
    cos.append(sum(x * y for x, y in zip(centered(va, r["a"]), centered(vb, r["b"]))))


def accuracy(t, lang=None):
    pairs = [(r, c) for r, c in zip(rows, cos) if lang in (None, r["lang"])]
    return sum((c >= t) == r["same"] for r, c in pairs) / len(pairs)


best = max((round(t / 100, 2) for t in range(10, 90)), key=accuracy)
report = {
    "pairs": len(rows),
    "threshold": THRESHOLD,
    "accuracy": round(accuracy(THRESHOLD), 3),
    "en.accuracy": round(accuracy(THRESHOLD, "en"), 3),
    "zh.accuracy": round(accuracy(THRESHOLD, "zh"), 3),
    "best_threshold_on_this_set": best,
    "best_accuracy": round(accuracy(best), 3),
    "same": sorted(round(c, 3) for r, c in zip(rows, cos) if r["same"]),
    "different": sorted(round(c, 3) for r, c in zip(rows, cos) if not r["same"]),
}
print(json.dumps(report, indent=1, ensure_ascii=False))
floor = json.loads((here / "floors.json").read_text())["same_issue"]["accuracy"]
sys.exit(0 if report["accuracy"] >= floor else 1)
