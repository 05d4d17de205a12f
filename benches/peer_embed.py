#!/usr/bin/env python3
"""sentence-transformers' side of `kefu bench compare`: embedding throughput on the same weights
kefu runs (kefu writes them out as a sentence-transformers folder), the same passages, batches
of 32, the same thread count. Prints one JSON line: passages/s, and the first vectors so that
kefu can check both engines compute the same model.

    python3 benches/peer_embed.py MODEL_DIR PASSAGES.jsonl PREFIX THREADS

Installs sentence-transformers and PyTorch into ~/.cache/kefu/pylib-st on first use. PyPI's
torch wheel for Linux is the CUDA build: with its NVIDIA libraries that is about 6 GB, though
only the CPU is used here."""
import importlib
import json
import subprocess
import sys
import time
from pathlib import Path

PYLIB = Path.home() / ".cache/kefu/pylib-st"
# Made before it is put on sys.path: a folder missing when Python first looks is remembered as
# missing (sys.path_importer_cache), and the packages installed into it would not be found
# until the next run: the first `kefu bench compare` on a fresh machine had no peers.
PYLIB.mkdir(parents=True, exist_ok=True)
sys.path.insert(0, str(PYLIB))
try:
    import sentence_transformers
    import torch
except ImportError:
    print(f"installing sentence-transformers and torch into {PYLIB} (about 6 GB, first use only)", file=sys.stderr)
    subprocess.check_call([sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                           "--target", str(PYLIB), "sentence-transformers==6.2.0", "torch==2.15.0"])
    importlib.invalidate_caches()
    import sentence_transformers
    import torch

model_dir, passages, prefix, threads = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
torch.set_num_threads(threads)
texts = [prefix + json.loads(l) for l in Path(passages).read_text().splitlines() if l.strip()]
model = sentence_transformers.SentenceTransformer(model_dir, device="cpu")
with torch.inference_mode():
    model.encode(texts[:32], batch_size=32)  # warm-up, as kefu's embedder is warm
    t0 = time.perf_counter()
    vectors = model.encode(texts, batch_size=32)  # the folder ends in a Normalize module
    seconds = time.perf_counter() - t0
print(json.dumps({
    "engine": f"sentence-transformers {sentence_transformers.__version__} (PyTorch {torch.__version__.split('+')[0]})",
    "passages_per_s": len(texts) / seconds, "threads": threads,
    "first": [[float(x) for x in v] for v in vectors[:4]],
}))
