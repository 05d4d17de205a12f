#!/usr/bin/env bash
# Generator speed, kefu against llama.cpp (llama-cpp-python, built from PyPI), one run, same GGUF
# files, same thread count, same greedy 64-token answer to the same ChatML prompt.
#   bash benches/peer_llamacpp.sh [THREADS]
# Needs the models in the kefu cache (`kefu models fetch qwen2.5-0.5b smollm2-135m`) and a release
# build. The first run builds llama-cpp-python (several minutes) into ~/.cache/kefu/pylib-llama.
set -euo pipefail
cd "$(dirname "$0")/.."
threads="${1:-2}"
models="${KEFU_MODELS_DIR:-$HOME/.cache/kefu/models}"
lib="$HOME/.cache/kefu/pylib-llama"
if ! PYTHONPATH="$lib" python3 -c "import llama_cpp" 2>/dev/null; then
  python3 -m pip install --quiet --disable-pip-version-check --target "$lib" llama-cpp-python==0.3.36 --no-deps
  python3 -m pip install --quiet --disable-pip-version-check --target "$lib" numpy diskcache jinja2 typing-extensions
fi
cargo build --release --quiet
for spec in "qwen2.5-0.5b:qwen2.5-coder-0.5b-instruct-q4_k_m.gguf" "smollm2-135m:SmolLM2-135M-Instruct.Q4_1.gguf"; do
  id="${spec%%:*}"; file="$models/$id/${spec#*:}"
  k=$(KEFU_THREADS=$threads ./target/release/kefu bench generate --model "$id" --concurrency 1,1 --max-tokens 64 2>/dev/null | tail -1)  # the second run: warm, like llama.cpp's
  l=$(PYTHONPATH="$lib" python3 benches/peer_llamacpp.py "$file" "$threads" 64)
  python3 - "$id" "$k" "$l" <<'PY'
import json, sys
mid, k, l = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3])
print(f"{mid:14} kefu {k['decode_tok_s_per_stream']:6.1f} tok/s, first token {k['ttft_p50_s']:.2f} s | "
      f"llama.cpp {l['decode_tok_s']:6.1f} tok/s, first token {l['ttft_s']:.2f} s | "
      f"ratio kefu/llama.cpp decode {k['decode_tok_s_per_stream'] / l['decode_tok_s']:.2f}")
PY
done
