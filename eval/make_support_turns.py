"""Builds eval/support_turns.jsonl from the hand-written, hand-labelled turns in
eval/support_turns/{en,zh}.txt (one turn a line: intent|sentiment|emotions|text).

sentiment: n negative, 0 neutral, p positive. emotions: any of A anger, F frustration,
C confusion, U urgency, G gratitude. The Chinese list mirrors the English one intent by intent
(many lines are translations), so a turn's split follows its intent and its place in the
intent's block: a translation pair lands in one split and cannot leak from train to held-out
across languages. Per intent, places 0-4 of every ten are train, 5-6 dev, 7-9 held-out.
{en,zh}_train.txt were written afterwards to teach the heads more of each intent and emotion:
all of their turns are train.

Labelling rules: the intent is what the customer wants done. A turn that only thanks, or
confirms the issue is solved, is `greeting` whatever it was about; dissatisfaction with the
service or staff (or a threat to complain elsewhere) without another request is `complaint`;
`human_request` is asking for a person even when angry.
"""
import json
import pathlib

HERE = pathlib.Path(__file__).parent
SENT = {"n": "negative", "0": "neutral", "p": "positive"}
EMO = {"A": "anger", "F": "frustration", "C": "confusion", "U": "urgency", "G": "gratitude"}


def split(place):
    r = place % 10
    return "train" if r < 5 else "dev" if r < 7 else "heldout"


def turns(lang, name, split_of):
    places = {}
    for n, line in enumerate((HERE / "support_turns" / name).read_text().splitlines()):
        if not line.strip():
            continue
        intent, s, emo, text = line.split("|", 3)
        place = places.get(intent, 0)
        places[intent] = place + 1
        yield {
            "id": f"{name.removesuffix('.txt')}-{n + 1:03d}",
            "lang": lang,
            "text": text.strip(),
            "sentiment": SENT[s],
            "emotions": [EMO[c] for c in emo],
            "intent": intent,
            "split": split_of(place),
        }


out = []
for lang in ["en", "zh"]:
    out.extend(turns(lang, f"{lang}.txt", split))
    # Written later, to teach: every turn of these files is train.
    out.extend(turns(lang, f"{lang}_train.txt", lambda _: "train"))
(HERE / "support_turns.jsonl").write_text(
    "".join(json.dumps(t, ensure_ascii=False) + "\n" for t in out))
