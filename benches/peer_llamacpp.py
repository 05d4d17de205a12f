#!/usr/bin/env python3
"""llama.cpp's side of `kefu bench compare`: greedy decoding of the same chat prompt as
`kefu bench generate`, on the same GGUF file and thread count. Prints one JSON line.

    python3 benches/peer_llamacpp.py MODEL.gguf THREADS MAX_TOKENS

Builds llama-cpp-python from PyPI into ~/.cache/kefu/pylib-llama on first use (several minutes;
needs cmake and a C++ compiler)."""
import importlib
import json
import subprocess
import sys
import time
from pathlib import Path

PYLIB = Path.home() / ".cache/kefu/pylib-llama"
# Made before it is put on sys.path: a folder missing when Python first looks is remembered as
# missing (sys.path_importer_cache), and the packages installed into it would not be found
# until the next run: the first `kefu bench compare` on a fresh machine had no peers.
PYLIB.mkdir(parents=True, exist_ok=True)
sys.path.insert(0, str(PYLIB))
try:
    import llama_cpp
except ImportError:
    print(f"building llama-cpp-python into {PYLIB} (first use only, several minutes)", file=sys.stderr)
    pip = [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--target", str(PYLIB)]
    subprocess.check_call(pip + ["--no-deps", "llama-cpp-python==0.3.36"])
    subprocess.check_call(pip + ["numpy", "diskcache", "jinja2", "typing-extensions"])
    importlib.invalidate_caches()
    import llama_cpp

path, threads, max_tokens = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
llm = llama_cpp.Llama(model_path=path, n_threads=threads, n_threads_batch=threads, n_ctx=2048, verbose=False, seed=0)
messages = [
    {"role": "system", "content": "You are a helpful customer-service assistant."},
    {"role": "user", "content": "My router keeps dropping the Wi-Fi connection every evening. What should I check?"},
]
runs = []
for _ in range(2):  # the first run warms caches; report the second
    llm.reset()
    t0 = time.perf_counter()
    first, n = None, 0
    for chunk in llm.create_chat_completion(messages=messages, max_tokens=max_tokens, temperature=0, stream=True):
        if chunk["choices"][0]["delta"].get("content"):
            if first is None:
                first = time.perf_counter() - t0
            n += 1
    total = time.perf_counter() - t0
    runs.append({"ttft_s": first, "chunks": n, "decode_tok_s": (n - 1) / (total - first) if n > 1 else None})
print(json.dumps({"engine": f"llama.cpp (llama-cpp-python {llama_cpp.__version__})", **runs[-1]}))
