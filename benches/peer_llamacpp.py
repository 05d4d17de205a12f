#!/usr/bin/env python3
"""llama.cpp's side of `kefu bench compare`: greedy decoding of the same chat prompt as
`kefu bench generate`, on the same GGUF file and thread count. Prints one JSON line.

    python3 benches/peer_llamacpp.py MODEL.gguf THREADS MAX_TOKENS

Builds llama-cpp-python from PyPI into ~/.cache/kefu/pylib-llama-noamx on first use (several
minutes; needs cmake and a C++ compiler), for the SIMD this CPU has, AMX left out."""
import importlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

PYLIB = Path.home() / ".cache/kefu/pylib-llama-noamx"
# ggml's own flags for the instruction sets /proc/cpuinfo lists, instead of -march=native: a
# CPU that lists AMX may run where the kernel does not grant AMX tile state (a VM), and the
# native build then dies of SIGILL at its first tile load (seen on a 2-core Xeon VM). AMX
# only speeds up batches on large models; decode speed comes from AVX-512/AVX2 here.
GGML_FLAGS = {"avx": "AVX", "avx2": "AVX2", "fma": "FMA", "f16c": "F16C", "bmi2": "BMI2",
              "avx512f": "AVX512", "avx512vbmi": "AVX512_VBMI", "avx512_vnni": "AVX512_VNNI",
              "avx512_bf16": "AVX512_BF16", "avx_vnni": "AVX_VNNI"}


def cmake_args():
    try:
        have = set(next(l for l in open("/proc/cpuinfo") if l.startswith("flags")).split(":")[1].split())
    except (OSError, StopIteration):
        return "-DGGML_NATIVE=OFF"
    flags = " ".join(f"-DGGML_{g}={'ON' if f in have else 'OFF'}" for f, g in GGML_FLAGS.items())
    return f"-DGGML_NATIVE=OFF -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF {flags}"


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
    env = dict(os.environ, CMAKE_ARGS=cmake_args())
    print(f"CMAKE_ARGS={env['CMAKE_ARGS']}", file=sys.stderr)
    # No pip cache: a wheel it built earlier with other flags would be taken as is.
    subprocess.check_call(pip + ["--no-deps", "--no-cache-dir", "llama-cpp-python==0.3.36"], env=env)
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
