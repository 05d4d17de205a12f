#!/usr/bin/env python3
"""Measures what the first stage's evidence and the chat-model judge can tell apart (issue 15).

    kefu serve --addr 127.0.0.1:8099 --data-dir /tmp/fit &     # empty data dir; generator on for `judge`
    python3 eval/handoff_evidence.py dump  http://127.0.0.1:8099 /tmp/feat.json
    python3 eval/handoff_evidence.py fit   /tmp/feat.json
    python3 eval/handoff_evidence.py judge http://127.0.0.1:8099 /tmp/feat.json
    python3 eval/handoff_evidence.py sentences http://127.0.0.1:8099 /tmp/feat.json
    python3 eval/handoff_evidence.py head http://127.0.0.1:8099 /tmp/feat.json [L2]

dump: imports kb_cards.jsonl, publishes, and for every question of kb_questions.jsonl keeps
/v1/search's top 5 (channel chat) and the top 3 of each language.
fit: a logistic regression (Newton's method, L2) on the dev split from features of the best hit
(score, similarity, keyword coverage, margin to the next, language pair, the other language's
best similarity against the own one's, question length), threshold chosen on dev for the F1 of
hand-offs, reported on dev and held-out.
judge: /v1/rerank (the chat-model judge) on the best card of a fixed sample of dev questions
(40 answered right, 40 unanswerable, 20 with a wrong card first): ROC AUC against the first stage.
sentences: the best card's sentence closest to the question as one more feature of `fit`.
head: a head trained on dev over the question's and the best passage's e5 vectors together.
Standard library only.
"""
import collections
import concurrent.futures as cf
import json
import math
import random
import re
import sys
import urllib.request
from pathlib import Path

E = Path(__file__).parent


def call(base, method, path, body=None, raw=None, ctype="application/json"):
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    req = urllib.request.Request(base + path, data=data, method=method)
    req.add_header("Content-Type", ctype)
    with urllib.request.urlopen(req, timeout=900) as r:
        return json.loads(r.read())


def qlang(text):
    return "zh" if re.search(r"[\u4e00-\u9fff]", text) else "en"


def dump(base, out):
    raw = (E / "kb_cards.jsonl").read_bytes()
    res = call(base, "POST", "/v1/cards/import", raw=raw, ctype="application/x-ndjson")
    ids, lang = {}, {}
    for item, line in zip(res["items"], raw.decode().splitlines()):
        c = json.loads(line)
        ids[c["title"]] = item["id"]
        lang[item["id"]] = c["language"]
        call(base, "POST", f"/v1/cards/{item['id']}/publish")
    qs = [json.loads(l) for l in open(E / "kb_questions.jsonl")]

    def one(q):
        text = " ".join(q.get("history", []) + [q["question"]])
        r = {"q": q, "all": call(base, "POST", "/v1/search", {"query": text, "top_k": 5, "filters": {"channel": "chat"}})["hits"]}
        for L in ("en", "zh"):
            r[L] = call(base, "POST", "/v1/search", {"query": text, "top_k": 3, "filters": {"channel": "chat", "language": L}})["hits"]
        for k in ("all", "en", "zh"):
            for h in r[k]:
                h["lang"] = lang[h["card_id"]]
                h["right"] = q.get("card") is not None and h["card_id"] == ids[q["card"]]
        return r

    with cf.ThreadPoolExecutor(4) as ex:
        rows = list(ex.map(one, qs))
    json.dump(rows, open(out, "w"), ensure_ascii=False)


def irls(X,y,l2=1.0,iters=30):
    d=len(X[0]); w=[0.0]*d
    for _ in range(iters):
        g=[0.0]*d; H=[[0.0]*d for _ in range(d)]
        for x,t in zip(X,y):
            z=sum(a*b for a,b in zip(w,x)); p=1/(1+math.exp(-max(-30,min(30,z))))
            for i in range(d):
                g[i]+= (p-t)*x[i]
                for j in range(d): H[i][j]+=p*(1-p)*x[i]*x[j]
        for i in range(1,d): g[i]+=l2*w[i]; H[i][i]+=l2
        # solve H s = g
        A=[H[i][:]+[g[i]] for i in range(d)]
        for c in range(d):
            p=max(range(c,d),key=lambda r:abs(A[r][c])); A[c],A[p]=A[p],A[c]
            for r in range(d):
                if r!=c:
                    f=A[r][c]/A[c][c]
                    for k in range(c,d+1): A[r][k]-=f*A[c][k]
        s=[A[i][d]/A[i][i] for i in range(d)]
        w=[a-b for a,b in zip(w,s)]
    return w


def prob(w, x):
    z = sum(a * b for a, b in zip(w, x))
    return 1 / (1 + math.exp(-max(-30, min(30, z))))


def features(r):
    q = r["q"]
    L = qlang(q["question"])
    O = "en" if L == "zh" else "zh"
    a = r["all"]
    if not a:
        return None
    h1 = a[0]
    s2 = a[1]["score"] if len(a) > 1 else 0
    same = r[L][0]["similarity"] if r[L] else 0
    other = r[O][0]["similarity"] if r[O] else 0
    cross = 1.0 if h1["lang"] != L else 0.0
    return [1.0, h1["score"], h1["similarity"], h1["keyword_coverage"], h1["score"] - s2, cross,
            other - same, math.log(1 + len(q["question"]))]


def confusion(rows, w, split, thr):
    ho = collections.defaultdict(lambda: [0, 0, 0, 0])
    for r in rows:
        q = r["q"]
        if q["split"] != split:
            continue
        x = features(r)
        handed = (prob(w, x) if x else 0) < thr
        un = q.get("card") is None
        for k in ("all", "kind." + q["kind"], "lang." + q["lang"]):
            c = ho[k]
            c[0] += handed and un
            c[1] += handed and not un
            c[2] += (not handed) and un
            c[3] += (not handed) and not un
    return {k: (tp / max(1, tp + fp), tp / max(1, tp + fn), tn / max(1, tn + fp)) for k, (tp, fp, fn, tn) in ho.items()}


def fit(path):
    rows = json.load(open(path))
    X, y = [], []
    for r in rows:
        x = features(r)
        if r["q"]["split"] == "dev" and x:
            X.append(x)
            y.append(1.0 if r["q"].get("card") else 0.0)
    w = irls(X, y, l2=0.1)
    f1 = lambda m: 2 * m[0] * m[1] / max(1e-9, m[0] + m[1])
    thr = max(range(5, 96), key=lambda t: f1(confusion(rows, w, "dev", t / 100)["all"])) / 100
    print("weights", [round(a, 2) for a in w], "threshold", thr)
    for split in ("dev", "heldout"):
        for k, (p, rc, ans) in sorted(confusion(rows, w, split, thr).items()):
            if k in ("all", "lang.en", "lang.zh", "kind.near_miss", "kind.unanswerable"):
                print(f"{split} {k}: hand-off precision {p:.3f} recall {rc:.3f} covered answered {ans:.3f}")


def auc(pos, neg):
    return sum((p > n) + 0.5 * (p == n) for p in pos for n in neg) / (len(pos) * len(neg))


def judge(base, path):
    rows = json.load(open(path))
    random.seed(7)
    dev = [r for r in rows if r["q"]["split"] == "dev" and not r["q"].get("history") and r["all"]]
    ans = [r for r in dev if r["q"].get("card") and r["all"][0]["right"]]
    una = [r for r in dev if not r["q"].get("card")]
    wrong = [r for r in dev if r["q"].get("card") and not r["all"][0]["right"]]
    sample = [("ans", r) for r in random.sample(ans, 40)] + [("una", r) for r in random.sample(una, 40)] + [("wrong", r) for r in random.sample(wrong, 20)]

    def one(item):
        cls, r = item
        h = r["all"][0]
        d = call(base, "POST", "/v1/rerank", {"query": r["q"]["question"], "texts": [h["title"] + "\n" + h["passage"]]})
        return cls, r["q"]["kind"], d["results"][0]["score"], h["score"], d["took_ms"]

    with cf.ThreadPoolExecutor(4) as ex:
        out = list(ex.map(one, sample))
    pick = lambda cls, i, kind=None: [o[i] for o in out if o[0] == cls and (kind is None or o[1] == kind)]
    nm = [o for o in out if o[1] == "near_miss"]
    print("judge ROC AUC, right vs unanswerable: %.3f (first stage %.3f)" % (auc(pick("ans", 2), pick("una", 2)), auc(pick("ans", 3), pick("una", 3))))
    print("judge ROC AUC, right vs near miss: %.3f (first stage %.3f), %d near misses" % (auc(pick("ans", 2), [o[2] for o in nm]), auc(pick("ans", 3), [o[3] for o in nm]), len(nm)))
    print("judge ROC AUC, right vs wrong card: %.3f" % auc(pick("ans", 2), pick("wrong", 2)))


def card_sentences(body):
    """A card body cut into sentences as the service's extracted replies cut it."""
    out = []
    for para in body.split("\n\n"):
        for s in re.split(r"(?<=[。！？；\n])|(?<=[.!?;])\s+", para):
            s = s.strip()
            if s and re.search(r"\w", s):
                out.append(s)
    return out


def sentences(base, path):
    """Adds the best card's sentence closest to the question (e5, via /v1/embeddings) to the
    features of `fit`, and reports what it adds: ROC AUC of the logistic fit on dev, answerable
    against unanswerable and against near misses."""
    rows = json.load(open(path))
    cards = {c["title"]: c for c in map(json.loads, open(E / "kb_cards.jsonl"))}
    emb = lambda texts, kind: [d["embedding"] for d in call(base, "POST", "/v1/embeddings", {"model": "e5-small", "input": texts, "input_type": kind})["data"]]
    cache, best = {}, {}
    for i, r in enumerate(rows):
        if not r["all"]:
            continue
        t = r["all"][0]["title"]
        if t not in cache:
            cache[t] = emb(card_sentences(cards[t]["body"]), "passage")
        qv = emb([r["q"]["question"]], "query")[0]
        sims = sorted((sum(a * b for a, b in zip(qv, v)) for v in cache[t]), reverse=True)
        best[i] = (sims[0], sims[0] - (sims[1] if len(sims) > 1 else sims[0]))
    variants = {
        "first-stage score": lambda x, b: [1.0, x[1]],
        "closest sentence": lambda x, b: [1.0, b[0]],
        "fit's features": lambda x, b: x,
        "fit's features + closest sentence": lambda x, b: x + list(b),
    }
    for name, f in variants.items():
        def data(split):
            X, y, kinds = [], [], []
            for i, r in enumerate(rows):
                x = features(r)
                if r["q"]["split"] == split and x and i in best:
                    X.append(f(x, best[i]))
                    y.append(1.0 if r["q"].get("card") else 0.0)
                    kinds.append(r["q"]["kind"])
            return X, y, kinds
        X, y, _ = data("dev")
        d = len(X[0])
        mu = [sum(r[j] for r in X) / len(X) for j in range(d)]
        sd = [max(1e-6, (sum((r[j] - mu[j]) ** 2 for r in X) / len(X)) ** 0.5) for j in range(d)]
        z = lambda r: [1.0] + [(r[j] - mu[j]) / sd[j] for j in range(1, d)]
        w = irls([z(r) for r in X], y)
        line = []
        for split in ("dev", "heldout"):
            Xs, ys, ks = data(split)
            ps = [prob(w, z(r)) for r in Xs]
            covered = [p for p, t in zip(ps, ys) if t]
            line.append("%s %.3f, near misses %.3f" % (split, auc(covered, [p for p, t in zip(ps, ys) if not t]),
                                                     auc(covered, [p for p, k in zip(ps, ks) if k == "near_miss"])))
        print("%-34s ROC AUC %s" % (name, "; ".join(line)))


def head(base, path, l2=0.01):
    """A head trained on the dev split over the pair (question, best card's passage) as e5 sees
    it: the elementwise product and absolute difference of the two vectors (via /v1/embeddings)
    with `fit`'s features; logistic, stochastic gradient with L2 `l2`. Target: the best card is
    the right one. ROC AUC on dev and held out, against the first-stage score."""
    rows = [r for r in json.load(open(path)) if r["all"]]

    def emb(texts, kind):
        out = []
        for i in range(0, len(texts), 32):
            d = call(base, "POST", "/v1/embeddings", {"model": "e5-small", "input": texts[i:i + 32], "input_type": kind})
            out += [e["embedding"] for e in d["data"]]
        return out

    qv = emb([r["q"]["question"] for r in rows], "query")
    pv = emb([r["all"][0]["passage"] for r in rows], "passage")
    data = []
    for r, q, p in zip(rows, qv, pv):
        x = [a * b for a, b in zip(q, p)] + [abs(a - b) for a, b in zip(q, p)] + features(r)[1:]
        data.append((r["q"]["split"], r["q"]["kind"], x, 1.0 if r["all"][0]["right"] else 0.0,
                     r["q"].get("card") is not None, r["all"][0]["score"]))
    d = len(data[0][2])
    dev = [t for t in data if t[0] == "dev"]
    mu = [sum(t[2][j] for t in dev) / len(dev) for j in range(d)]
    sd = [max(1e-6, (sum((t[2][j] - mu[j]) ** 2 for t in dev) / len(dev)) ** 0.5) for j in range(d)]
    z = lambda x: [(x[j] - mu[j]) / sd[j] for j in range(d)]
    train = [(z(t[2]), t[3]) for t in dev]
    w, b, lr = [0.0] * d, 0.0, 0.05
    for epoch in range(150):
        random.Random(epoch).shuffle(train)
        for x, y in train:
            g = prob([b] + w, [1.0] + x) - y
            b -= lr * g
            w = [wj - lr * (g * xj + l2 * wj) for wj, xj in zip(w, x)]
    for split in ("dev", "heldout"):
        S = [t for t in data if t[0] == split]
        ps = [prob([b] + w, [1.0] + z(t[2])) for t in S]
        right = lambda v: [x for x, t in zip(v, S) if t[3] == 1.0]
        una = lambda v: [x for x, t in zip(v, S) if not t[4]]
        nm = lambda v: [x for x, t in zip(v, S) if t[1] == "near_miss"]
        fs = [t[5] for t in S]
        print("%s: head ROC AUC right card first vs unanswerable %.3f (first-stage score %.3f); vs near misses %.3f (%.3f)"
              % (split, auc(right(ps), una(ps)), auc(right(fs), una(fs)), auc(right(ps), nm(ps)), auc(right(fs), nm(fs))))


if __name__ == "__main__":
    cmd = sys.argv[1]
    if cmd == "dump":
        dump(sys.argv[2].rstrip("/"), sys.argv[3])
    elif cmd == "fit":
        fit(sys.argv[2])
    elif cmd == "judge":
        judge(sys.argv[2].rstrip("/"), sys.argv[3])
    elif cmd == "sentences":
        sentences(sys.argv[2].rstrip("/"), sys.argv[3])
    elif cmd == "head":
        head(sys.argv[2].rstrip("/"), sys.argv[3], *(float(a) for a in sys.argv[4:5]))
