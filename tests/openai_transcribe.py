"""Transcribes one file through kefu with the official `openai` Python client.
Usage: python3 openai_transcribe.py BASE_URL API_KEY AUDIO_FILE
Prints one JSON object with what each response format gave; the Rust test asserts on it."""
import json
import sys

import openai

base, key, path = sys.argv[1:4]
client = openai.OpenAI(base_url=base + "/v1", api_key=key, max_retries=0, timeout=300)
out = {}
with open(path, "rb") as f:
    out["json"] = client.audio.transcriptions.create(model="whisper-1", file=f).text
with open(path, "rb") as f:
    v = client.audio.transcriptions.create(
        model="whisper-1", file=f, response_format="verbose_json",
        timestamp_granularities=["word", "segment"], language="en")
    out["verbose"] = {"language": v.language, "duration": v.duration, "text": v.text,
                      "segments": [{"start": s.start, "end": s.end, "text": s.text} for s in v.segments or []],
                      "words": [{"word": w.word, "start": w.start, "end": w.end} for w in v.words or []]}
with open(path, "rb") as f:
    out["srt"] = client.audio.transcriptions.create(model="whisper-1", file=f, response_format="srt")
with open(path, "rb") as f:
    out["text"] = client.audio.transcriptions.create(model="whisper-1", file=f, response_format="text")
try:
    with open(path, "rb") as f:
        client.audio.transcriptions.create(model="whisper-1", file=f, language="xx")
    out["bad_language"] = None
except openai.APIStatusError as e:
    out["bad_language"] = {"status": e.status_code, "body": e.response.json()}
print(json.dumps(out))
