#!/usr/bin/env python3
"""Calibrates the answer threshold ([answer] threshold in kefu.toml).

Imports eval/calibration_cards.jsonl into a running kefu server, publishes them, asks every
question in eval/calibration_questions.jsonl through /v1/search (the same retrieval the answer
endpoint runs, channel filter "chat"), and picks the threshold on the best card's score that
minimises  2 x (wrong answers) + (needless hand-offs):
  - a wrong answer: the question is answered (score >= t) but no card covers it, or the best card
    is not the right one;
  - a needless hand-off: a card covers it, retrieval found it first, but score < t.
Wrong answers weigh double: an invented answer costs more than a hand-off to a person.

    kefu serve --data-dir /tmp/calib &   # an empty data directory
    python3 eval/calibrate_threshold.py http://127.0.0.1:8080 [API_KEY]
Standard library only.
"""
import json
import sys
import urllib.request
from pathlib import Path

HERE = Path(__file__).parent


def call(base, key, method, path, body=None, raw=None, ctype="application/json"):
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    req = urllib.request.Request(base + path, data=data, method=method)
    req.add_header("Content-Type", ctype)
    if key:
        req.add_header("Authorization", "Bearer " + key)
    with urllib.request.urlopen(req) as r:
        return json.loads(r.read())


def main():
    base = sys.argv[1].rstrip("/") if len(sys.argv) > 1 else "http://127.0.0.1:8080"
    key = sys.argv[2] if len(sys.argv) > 2 else None
    cards_raw = (HERE / "calibration_cards.jsonl").read_bytes()
    res = call(base, key, "POST", "/v1/cards/import", raw=cards_raw, ctype="application/x-ndjson")
    ids = {}
    for item, line in zip(res["items"], cards_raw.decode().splitlines()):
        card = json.loads(line)
        ids[card["title"]] = item["id"]
        call(base, key, "POST", f"/v1/cards/{item['id']}/publish")
    rows = []
    for line in (HERE / "calibration_questions.jsonl").read_text().splitlines():
        q = json.loads(line)
        hits = call(base, key, "POST", "/v1/search", {"query": q["q"], "top_k": 1, "filters": {"channel": "chat"}})["hits"]
        best = hits[0] if hits else None
        score = best["score"] if best else 0.0
        right = q["card"] is not None and best is not None and best["card_id"] == ids[q["card"]]
        rows.append((score, q["card"] is not None, right, q["q"]))
    candidates = sorted({round(r[0], 3) for r in rows} | {0.0, 1.0})
    best_t, best_cost = None, None
    for t in candidates:
        wrong = sum(1 for s, covered, right, _ in rows if s >= t and not right)
        needless = sum(1 for s, covered, right, _ in rows if s < t and right)
        cost = 2 * wrong + needless
        if best_cost is None or cost < best_cost:
            best_t, best_cost = t, cost
    t = best_t
    covered = [r for r in rows if r[1]]
    uncovered = [r for r in rows if not r[1]]
    answered_right = sum(1 for r in covered if r[0] >= t and r[2])
    handed_off_uncovered = sum(1 for r in uncovered if r[0] < t)
    wrong = sum(1 for r in rows if r[0] >= t and not r[2])
    handoffs = [r for r in rows if r[0] < t]
    print(f"{'score':>6}  covered  right  question")
    for s, c, r, q in sorted(rows, reverse=True):
        mark = "<- threshold" if abs(s - t) < 1e-9 else ""
        print(f"{s:6.3f}  {str(c):7}  {str(r):5}  {q} {mark}")
    print()
    print(json.dumps({
        "threshold": t,
        "questions": len(rows),
        "covered": len(covered),
        "covered_answered_with_right_card": answered_right,
        "uncovered_handed_off": handed_off_uncovered,
        "uncovered": len(uncovered),
        "wrong_answers": wrong,
        "handoff_precision": round(sum(1 for r in handoffs if not r[2]) / max(1, len(handoffs)), 3),
        "handoff_recall": round(handed_off_uncovered / max(1, len(uncovered)), 3),
    }, indent=2))


if __name__ == "__main__":
    main()
