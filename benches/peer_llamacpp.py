#!/usr/bin/env python3
"""llama.cpp's side of benches/peer_llamacpp.sh: greedy decoding of the same chat prompt as
`kefu bench generate`, on the same GGUF file and thread count. Prints one JSON line."""
import json
import sys
import time

from llama_cpp import Llama

path, threads, max_tokens = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
llm = Llama(model_path=path, n_threads=threads, n_threads_batch=threads, n_ctx=2048, verbose=False, seed=0)
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
print(json.dumps(runs[-1]))
