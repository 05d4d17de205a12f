#!/usr/bin/env python3
"""The answer decision with and without cross-language search (issue 15), through a running server.

    KEFU_GENERATOR=qwen2.5-0.5b kefu serve --addr 127.0.0.1:8099 --data-dir /tmp/across &   # empty
    python3 eval/across_languages.py http://127.0.0.1:8099 heldout [dev ...]
    python3 eval/across_languages.py http://127.0.0.1:8099 --cards en heldout   # a fresh data dir each

With `--cards en` only the English cards are imported, and only the questions in the other
language are asked whose card is one of them (answerable) or that no card answers (unanswerable,
near misses): a business with an English knowledge base and a customer who writes Chinese, the
case `across_languages = "no_cards_in_language"` (the default) translates for.

Imports and publishes kb_cards.jsonl, then for every question of the given splits makes the
decision `/v1/answer` makes before generating, from `/v1/search` (channel chat; a follow-up is
searched with its history, as the answer flow reads it): the best card answers when its score
clears the threshold. "translated" is the answer flow with `answer.across_languages` on: a
question whose best card falls short is searched again with `"translate": true` (the chat model
translates it into the other language of the cards, whose hits lose `answer.translation_penalty`).
No generation of answers, so it runs in minutes; the decision is the one the endpoint makes.

Reports, per split, for cross-language and same-language answerable questions the share answered
with the right card and with a wrong one, and for unanswerable ones (near misses apart) the share
handed off; then hand-off precision and recall per language. Standard library only.
"""
import collections
import json
import os
import sys
import time
from pathlib import Path

from handoff_evidence import call  # same folder; the script's own folder is on sys.path

E = Path(__file__).parent
THRESHOLD = 0.72
# With KEFU_EVAL_DUMP=file, every decision's best card and score go to that file (for choosing
# answer.translation_penalty on dev).
DUMP = [] if os.environ.get("KEFU_EVAL_DUMP") else None


def best(base, text, translate):
    body = {"query": text, "top_k": 5, "filters": {"channel": "chat"}, "translate": translate}
    hits = call(base, "POST", "/v1/search", body)["hits"]
    return hits[0] if hits else None


def main(base, splits, only=None):
    lines = (E / "kb_cards.jsonl").read_text().splitlines()
    cards = {json.loads(l)["title"]: json.loads(l)["language"] for l in lines}
    if only:
        lines = [l for l in lines if json.loads(l)["language"] == only]
    raw = "\n".join(lines).encode()
    res = call(base, "POST", "/v1/cards/import", raw=raw, ctype="application/x-ndjson")
    for item in res["items"]:
        call(base, "POST", f"/v1/cards/{item['id']}/publish")
    qs = [json.loads(l) for l in open(E / "kb_questions.jsonl")]
    if only:
        qs = [q for q in qs if q["lang"] != only and (q.get("card") is None or cards[q["card"]] == only)]
    t0, translated = time.time(), 0
    for split in splits:
        counts = {m: collections.Counter() for m in ("plain", "translated")}
        for q in (q for q in qs if q["split"] == split):
            text = " ".join(q.get("history", []) + [q["question"]])
            plain = best(base, text, False)
            decided = {"plain": plain}
            if plain is None or plain["score"] < THRESHOLD:
                decided["translated"] = best(base, text, True)
                translated += 1
            else:
                decided["translated"] = plain
            if q.get("card") is None:
                group = "near_miss" if q["kind"] == "near_miss" else "unanswerable"
            else:
                group = "cross_language" if q["kind"] == "cross_language" else "same_language"
            if DUMP is not None:
                DUMP.append({"q": q, **{m: h and {"score": h["score"], "title": h["title"], "translated": "translated_query" in h} for m, h in decided.items()}})
            for mode, hit in decided.items():
                c = counts[mode]
                answered = hit is not None and hit["score"] >= THRESHOLD
                c[group] += 1
                c[(group, "handed_off")] += not answered
                if q.get("card") is not None and answered:
                    c[(group, "right" if hit["title"] == q["card"] else "wrong")] += 1
                c[(q["lang"], "unanswerable")] += q.get("card") is None
                c[(q["lang"], "handed_off")] += not answered
                c[(q["lang"], "handed_off_right")] += (not answered) and q.get("card") is None
        for mode, c in counts.items():
            print(f"{split} {mode}:")
            for g in ("cross_language", "same_language"):
                n = c[g]
                if not n:
                    continue
                print(f"  {g:15} n={n:3}  right {c[(g, 'right')] / n:.3f}  wrong {c[(g, 'wrong')] / n:.3f}  handed off {c[(g, 'handed_off')] / n:.3f}")
            for g in ("unanswerable", "near_miss"):
                n = c[g]
                print(f"  {g:15} n={n:3}  handed off {c[(g, 'handed_off')] / n:.3f}")
            for lang in ("en", "zh"):
                ho, tp, un = c[(lang, "handed_off")], c[(lang, "handed_off_right")], c[(lang, "unanswerable")]
                print(f"  hand-off {lang}: precision {tp / max(ho, 1):.3f} recall {tp / max(un, 1):.3f}")
    print(f"{translated} questions translated, {time.time() - t0:.0f} s", file=sys.stderr)
    if DUMP is not None:
        Path(os.environ["KEFU_EVAL_DUMP"]).write_text(json.dumps(DUMP, ensure_ascii=False))


if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    args = sys.argv[2:]
    only = None
    if args[:1] == ["--cards"]:
        only, args = args[1], args[2:]
    main(sys.argv[1].rstrip("/"), args, only)
