"""Grouped 5-fold cross-validation of the emotion and intent heads over the train and dev splits
of support_turns.jsonl: the measure to choose training settings by without touching the
held-out split (which the shipped heads never learn from, and `kefu eval` reports).

A turn and its translation share a group and so a fold: the Chinese lists mirror the English
ones line by line (support_turns/{en,zh}.txt by place in each intent's block, {en,zh}_train.txt
by line, except the Chinese-only block of zh_train.txt), and a translation in the other fold
would make the figures optimistic.

It reads the vectors `kefu train signals` cached (models/heads/<embedder>.vectors.json, so run
that first) and fits heads like src/runtime/classify.rs (standardised features, class-weighted
softmax regression by full-batch gradient descent, 300 epochs, learning rate 0.5) over
vectors centered per language like src/conversation/signals.rs (here: the mean of every cached
vector of the language, an approximation of the trained centers). Needs numpy.

    python3 eval/signals_cv.py [--l2 0.1] [--seeds 2]
"""
import argparse
import collections
import json
import os
import pathlib
import random

import numpy as np

HERE = pathlib.Path(__file__).parent
EMOTIONS = ["anger", "frustration", "confusion", "urgency", "gratitude"]
ap = argparse.ArgumentParser()
ap.add_argument("--l2", type=float, default=0.1)
ap.add_argument("--seeds", type=int, default=2)
ap.add_argument("--models", default=os.environ.get("KEFU_MODELS_DIR", os.path.expanduser("~/.cache/kefu/models")))
ap.add_argument("--embedder", default="e5-small")
args = ap.parse_args()

cache = json.loads(pathlib.Path(args.models, "heads", f"{args.embedder}.vectors.json").read_text())["vectors"]
rows = [json.loads(l) for l in (HERE / "support_turns.jsonl").read_text().splitlines() if l.strip()]
rows = [r for r in rows if r["split"] in ("train", "dev")]


def cjk(c):
    return "\u4e00" <= c <= "\u9fff" or "\u3400" <= c <= "\u4dbf"


def language(t):  # as src/text.rs detect_language
    k = sum(cjk(c) for c in t)
    letters = sum(cjk(c) or c.isalpha() for c in t)
    return "zh" if letters and k * 5 >= letters else "en"


sums = {}
for t, v in cache.items():
    s = sums.setdefault(language(t), [np.zeros(len(v)), 0])
    s[0] += v
    s[1] += 1
centers = {l: s / n for l, (s, n) in sums.items()}


def centered(t):
    v = np.array(cache[t]) - centers[language(t)]
    return v / np.linalg.norm(v)


def group(r, places):
    name, n = r["id"].rsplit("-", 1)
    n = int(n)
    if name in ("en", "zh"):
        key = (r["lang"], r["intent"])
        p = places[key]
        places[key] += 1
        return ("lists", r["intent"], p)
    if name == "zh_train" and 186 <= n <= 225:  # the Chinese-only block
        return ("zh_only", n)
    if name == "zh_train" and n > 225:
        n -= 40
    return ("train", n)


def fit(x, y, k, l2, epochs=300, lr=0.5):
    n, d = x.shape
    mean, std = x.mean(0), np.maximum(x.std(0), 1e-6)
    z = (x - mean) / std
    cw = n / (k * np.maximum(np.bincount(y, minlength=k), 1))
    sw = cw[y] / cw[y].sum()
    w, b, onehot = np.zeros((k, d)), np.zeros(k), np.eye(k)[y]
    for _ in range(epochs):
        logits = z @ w.T + b
        p = np.exp(logits - logits.max(1, keepdims=True))
        p /= p.sum(1, keepdims=True)
        g = (p - onehot) * sw[:, None]
        w -= lr * (g.T @ z + l2 * w)
        b -= lr * g.sum(0)
    w2 = w / std
    return w2, b - (w2 * mean).sum(1)


def predict(head, x):
    logits = x @ head[0].T + head[1]
    p = np.exp(logits - logits.max(1, keepdims=True))
    return p / p.sum(1, keepdims=True)


def f1(s, y, th):
    p = s >= th
    tp, fp, fn = (p & y).sum(), (p & ~y).sum(), (~p & y).sum()
    return 0.0 if tp == 0 else 2 * tp / (2 * tp + fp + fn)


def best_threshold(s, y):  # as training.rs: 0.05 steps, best F1
    return max((f1(s, y, i * 0.05), i * 0.05) for i in range(1, 20))[1]


places = collections.Counter()
groups = [group(r, places) for r in rows]
x = np.array([centered(r["text"]) for r in rows])
lang = np.array([r["lang"] for r in rows])
emo = np.array([[e in r["emotions"] for e in EMOTIONS] for r in rows])
labels = sorted({r["intent"] for r in rows})
intent = np.array([labels.index(r["intent"]) for r in rows])
res = collections.defaultdict(list)
unique = sorted(set(groups))
for seed in range(args.seeds):
    random.Random(seed).shuffle(unique)
    fold_of = {g: i % 5 for i, g in enumerate(unique)}
    folds = np.array([fold_of[g] for g in groups])
    for f in range(5):
        tr, te = folds != f, folds == f
        for j, e in enumerate(EMOTIONS):
            y = emo[tr, j].astype(int)
            oof = np.zeros(tr.sum())
            inner = np.arange(tr.sum()) % 5
            for k in range(5):
                oof[inner == k] = predict(fit(x[tr][inner != k], y[inner != k], 2, args.l2), x[tr][inner == k])[:, 1]
            th = best_threshold(oof, y.astype(bool))
            s = predict(fit(x[tr], y, 2, args.l2), x[te])[:, 1]
            for l in ("en", "zh"):
                m = lang[te] == l
                res[(l, e)].append(f1(s[m], emo[te, j][m], th))
        p = predict(fit(x[tr], intent[tr], len(labels), args.l2), x[te])
        got = np.where(p.max(1) >= 0.3, p.argmax(1), labels.index("other"))
        for l in ("en", "zh"):
            m = lang[te] == l
            res[(l, "intent")].append((got[m] == intent[te][m]).mean())
out = {}
for l in ("en", "zh"):
    out[l] = {
        "emotion_macro_f1": round(float(np.mean([np.mean(res[(l, e)]) for e in EMOTIONS])), 3),
        "intent_accuracy": round(float(np.mean(res[(l, "intent")])), 3),
        "emotion_f1": {e: round(float(np.mean(res[(l, e)])), 3) for e in EMOTIONS},
    }
print(json.dumps({"turns": len(rows), "l2": args.l2, "seeds": args.seeds, **out}, indent=1))
