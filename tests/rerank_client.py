"""Drives kefu's /v1/rerank with the official `cohere` Python client, as an application built on
Cohere's rerank API would. Usage: python3 rerank_client.py BASE_URL API_KEY
Reads {"query": ..., "documents": [...]} on stdin; prints what the client parsed, as JSON."""
import json
import sys

import cohere

base, key = sys.argv[1:3]
ask = json.load(sys.stdin)
client = cohere.Client(api_key=key, base_url=base, timeout=600)
r = client.rerank(model="kefu", query=ask["query"], documents=ask["documents"], top_n=2,
                  return_documents=True)
print(json.dumps({
    "cohere_version": cohere.__version__,
    "id": r.id,
    "results": [{"index": x.index, "relevance_score": x.relevance_score,
                 "text": x.document.text if x.document else None} for x in r.results],
}))
