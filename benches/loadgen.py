"""What the latency benches share: JSON requests with an optional key, Server-Sent Events,
percentiles, and N clients at once over a list of work. Standard library only."""
import json
import threading
import time
import urllib.request


def post(base, key, path, body, timeout=600):
    """POSTs `body` as JSON; returns the open response."""
    req = urllib.request.Request(base + path, data=json.dumps(body).encode(), method="POST")
    req.add_header("Content-Type", "application/json")
    if key:
        req.add_header("Authorization", "Bearer " + key)
    return urllib.request.urlopen(req, timeout=timeout)


def sse(response):
    """Yields (event, data) for each `data:` line of a Server-Sent Events response."""
    event = None
    for raw in response:
        line = raw.decode().rstrip("\n")
        if line.startswith("event:"):
            event = line[6:].strip()
        elif line.startswith("data:"):
            yield event, line[5:]


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def run_pool(work, n, fn):
    """Runs fn over every item of `work` with n threads; returns (results, wall seconds)."""
    work = list(work)
    results, lock = [], threading.Lock()

    def worker():
        while True:
            with lock:
                if not work:
                    return
                item = work.pop()
            r = fn(item)
            with lock:
                results.append(r)

    t0 = time.perf_counter()
    ts = [threading.Thread(target=worker) for _ in range(n)]
    [t.start() for t in ts]
    [t.join() for t in ts]
    return results, time.perf_counter() - t0
