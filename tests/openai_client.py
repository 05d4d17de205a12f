"""Drives kefu with the official `openai` Python client, as an existing application would.
Usage: python3 openai_client.py BASE_URL API_KEY GENERATOR_ID EMBEDDER_ID
Prints one JSON object with what it saw; the Rust test asserts on it."""
import json
import sys

import openai

base, key, gen, emb = sys.argv[1:5]
client = openai.OpenAI(base_url=base + "/v1", api_key=key, max_retries=0, timeout=300)
out = {"openai_version": openai.__version__}

out["models"] = sorted(m.id for m in client.models.list())

r = client.chat.completions.create(
    model=gen,
    messages=[{"role": "system", "content": "You are a helpful assistant."},
              {"role": "user", "content": "Say hello to a customer."}],
    max_tokens=24, temperature=0, seed=3,
)
out["plain"] = {"text": r.choices[0].message.content, "finish": r.choices[0].finish_reason,
                "completion_tokens": r.usage.completion_tokens, "prompt_tokens": r.usage.prompt_tokens}

chunks = client.chat.completions.create(
    model=gen,
    messages=[{"role": "system", "content": "You are a helpful assistant."},
              {"role": "user", "content": "Say hello to a customer."}],
    max_tokens=24, temperature=0, seed=3, stream=True, stream_options={"include_usage": True},
)
text, n, finish, usage = "", 0, None, None
for c in chunks:
    if c.usage is not None:
        usage = c.usage.completion_tokens
    for ch in c.choices:
        if ch.delta.content:
            text += ch.delta.content
            n += 1
        if ch.finish_reason:
            finish = ch.finish_reason
out["stream"] = {"text": text, "chunks": n, "finish": finish, "completion_tokens": usage}

e = client.embeddings.create(model=emb, input=["How do I reset my router?", "如何重置路由器？", "What is the weather?"])
vecs = [d.embedding for d in e.data]
dot = lambda a, b: sum(x * y for x, y in zip(a, b))
out["embeddings"] = {"count": len(vecs), "dim": len(vecs[0]), "norm": dot(vecs[0], vecs[0]),
                     "same_meaning": dot(vecs[0], vecs[1]), "different": dot(vecs[0], vecs[2])}
ef = client.embeddings.create(model=emb, input="How do I reset my router?", encoding_format="float")
out["embeddings"]["float_matches_base64"] = max(abs(a - b) for a, b in zip(ef.data[0].embedding, vecs[0]))

try:
    client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
    out["unknown_model"] = "accepted"
except openai.NotFoundError as err:
    out["unknown_model"] = err.status_code
print(json.dumps(out))
