#!/usr/bin/env python3
"""Speech recognition, kefu against faster-whisper, side by side in one run.

kefu runs twice: as configured by default (the encoder over the clip's length) and with
Whisper's full 30 s window (`voice.fit_window = false`), which is what faster-whisper does.
Both engines read the same CTranslate2 Whisper folder from the kefu models cache (kefu converts it to
ggml for whisper.cpp; faster-whisper runs it in CTranslate2), on the same clips, with the same
thread count, greedy decoding (beam 1) and language detection. Reports per engine the
real-time factor (decode time / audio time; below 1 is faster than real time) and the word
error rate against the text espeak-ng spoke, and the ratio kefu / faster-whisper.

With --stream URL it also measures live streaming against a running server: each clip is sent
over /v1/voice/stream in real time (20 ms frames) and the time from the end of the clip's audio
to its `final` message is the latency a caller waits.

Usage:
    cargo build --release
    python3 benches/asr_peer.py [--threads 2] [--models whisper-tiny.en,whisper-base]
        [--stream http://127.0.0.1:8080] [--json out.json]
Needs espeak-ng and ffmpeg (apt), and installs faster-whisper (and websockets) from PyPI into
~/.cache/kefu/pylib-bench on first use.
"""
import argparse
import importlib
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SENTENCES = [
    "Hello, I ordered a laptop last week and it still has not arrived.",
    "I would like a refund for my broken headphones, please.",
    "My internet connection keeps dropping every evening.",
    "My order number is four five seven two one, can you check where it is?",
    "This is the worst service I have ever had, I want to speak to a manager.",
    "How do I reset the password for my online account?",
    "The router lights are all green but nothing loads in the browser.",
    "Can I change the delivery address to my office instead of my home?",
]

ROOT = Path(__file__).resolve().parent.parent
MODELS = Path(os.environ.get("KEFU_MODELS_DIR", Path.home() / ".cache/kefu/models"))
PYLIB = Path.home() / ".cache/kefu/pylib-bench"


def words(s):
    return [w for w in re.split(r"[^a-z0-9']+", s.lower()) if w]


def wer(truth, hyp):
    t, h = words(truth), words(hyp)
    prev = list(range(len(h) + 1))
    for i, x in enumerate(t):
        cur = [i + 1]
        for j, y in enumerate(h):
            cur.append(min(prev[j] + (x != y), prev[j + 1] + 1, cur[j] + 1))
        prev = cur
    return prev[-1] / max(1, len(t))


def ensure_pylib():
    # Made before it is put on sys.path: a folder missing when Python first looks is remembered as
    # missing (sys.path_importer_cache), and the packages installed into it would not be found
    # until the next run: the first `kefu bench compare` on a fresh machine had no peers.
    PYLIB.mkdir(parents=True, exist_ok=True)
    sys.path.insert(0, str(PYLIB))
    try:
        import faster_whisper  # noqa: F401
        import websockets  # noqa: F401
    except ImportError:
        subprocess.check_call([sys.executable, "-m", "pip", "install", "--quiet",
                               "--disable-pip-version-check", "--target", str(PYLIB),
                               "faster-whisper==1.2.1", "websockets==15.0.1"])
        importlib.invalidate_caches()


def make_clips(dir_):
    clips = []
    for i, s in enumerate(SENTENCES):
        raw = Path(dir_) / f"c{i}.espeak.wav"
        wav = Path(dir_) / f"c{i}.wav"
        subprocess.check_call(["espeak-ng", "-v", "en-us", "-s", "150", "-w", str(raw), s])
        subprocess.check_call(["ffmpeg", "-loglevel", "error", "-y", "-i", str(raw),
                               "-ar", "16000", "-ac", "1", str(wav)])
        clips.append((wav, s))
    return clips


def run_kefu(model, clips, threads, kefu, fit_window=True):
    env = dict(os.environ, KEFU_VOICE_FIT_WINDOW="1" if fit_window else "0", KEFU_LOG="warn")
    out = subprocess.run([str(kefu), "transcribe", "--json", "--model", model,
                          "--threads", str(threads)] + [str(c[0]) for c in clips],
                         check=True, capture_output=True, text=True, env=env).stdout
    rows = [json.loads(l) for l in out.splitlines() if l.startswith("{")]
    return [(r["text"], r["audio_ms"] / 1000, r["decode_ms"] / 1000) for r in rows]


def run_faster_whisper(model, clips, threads):
    from faster_whisper import WhisperModel
    from faster_whisper.audio import decode_audio
    m = WhisperModel(str(MODELS / model), device="cpu", compute_type="default", cpu_threads=threads)
    rows = []
    # Warm-up, as kefu's pool is warm after loading.
    list(m.transcribe(decode_audio(str(clips[0][0])), beam_size=1)[0])
    for wav, _ in clips:
        audio = decode_audio(str(wav))
        t0 = time.perf_counter()
        segs, info = m.transcribe(audio, beam_size=1, vad_filter=False)
        text = " ".join(s.text.strip() for s in segs)
        rows.append((text, len(audio) / 16000, time.perf_counter() - t0))
    return rows


def summarise(name, rows, clips):
    audio = sum(r[1] for r in rows)
    dec = sum(r[2] for r in rows)
    w = statistics.mean(wer(c[1], r[0]) for r, c in zip(rows, clips))
    return {"engine": name, "rtf": dec / audio, "wer": w, "audio_s": audio, "decode_s": dec}


def stream_latency(url, clips, key):
    from websockets.sync.client import connect
    lat = []
    ws_url = url.replace("http", "ws", 1) + "/v1/voice/stream"
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    for wav, _ in clips:
        pcm = subprocess.run(["ffmpeg", "-loglevel", "error", "-i", str(wav), "-f", "s16le",
                              "-ac", "1", "-ar", "16000", "-"], check=True, capture_output=True).stdout
        pcm += b"\0" * 32000  # one second of silence after the speech
        with connect(ws_url, additional_headers=headers, max_size=None) as ws:
            ws.send(json.dumps({"type": "start", "sample_rate": 16000, "encoding": "pcm_s16le", "language": "en"}))
            json.loads(ws.recv())
            speech_end = None
            start = time.perf_counter()
            frame = 640
            final_at = None
            for i in range(0, len(pcm), frame):
                ws.send(pcm[i:i + frame])
                if i + frame >= len(pcm) - 32000 and speech_end is None:
                    speech_end = time.perf_counter()
                # real time: frame i is due at start + i/32000 s
                due = start + (i + frame) / 32000
                while True:
                    wait = due - time.perf_counter()
                    if wait <= 0:
                        break
                    try:
                        m = json.loads(ws.recv(timeout=wait))
                        if m.get("type") == "final" and final_at is None:
                            final_at = time.perf_counter()
                    except TimeoutError:
                        break
            ws.send(json.dumps({"type": "stop"}))
            while final_at is None:
                m = json.loads(ws.recv(timeout=120))
                if m.get("type") == "final":
                    final_at = time.perf_counter()
                if m.get("type") == "done":
                    break
            if final_at:
                lat.append(final_at - speech_end)
    lat.sort()
    return {"utterances": len(lat), "p50_s": lat[len(lat) // 2] if lat else None,
            "max_s": lat[-1] if lat else None}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--models", default="whisper-tiny.en,whisper-base")
    ap.add_argument("--stream", help="a running kefu server to measure streaming latency on")
    ap.add_argument("--key", default=os.environ.get("KEFU_KEY", ""))
    ap.add_argument("--json")
    ap.add_argument("--kefu", default=str(ROOT / "target/release/kefu"), help="the kefu binary")
    a = ap.parse_args()
    ensure_pylib()
    results = {"threads": a.threads, "clips": len(SENTENCES), "models": []}
    with tempfile.TemporaryDirectory() as d:
        clips = make_clips(d)
        for model in a.models.split(","):
            k = summarise("kefu (whisper.cpp)", run_kefu(model, clips, a.threads, a.kefu), clips)
            kw = summarise("kefu, 30 s window", run_kefu(model, clips, a.threads, a.kefu, False), clips)
            f = summarise("faster-whisper", run_faster_whisper(model, clips, a.threads), clips)
            results["models"].append({"model": model, "kefu": k, "kefu_full_window": kw,
                                      "faster_whisper": f,
                                      "rtf_ratio_kefu_over_peer": k["rtf"] / f["rtf"]})
        if a.stream:
            results["stream"] = stream_latency(a.stream, clips, a.key)
    print(f"{'model':<16} {'engine':<20} {'RTF':>6} {'WER':>6}")
    for m in results["models"]:
        for e in ("kefu", "kefu_full_window", "faster_whisper"):
            r = m[e]
            print(f"{m['model']:<16} {r['engine']:<20} {r['rtf']:6.3f} {r['wer']:6.3f}")
        print(f"{m['model']:<16} {'kefu / peer RTF':<20} {m['rtf_ratio_kefu_over_peer']:6.2f}")
    if "stream" in results:
        s = results["stream"]
        print(f"stream: end of speech -> final, p50 {s['p50_s']:.2f} s, max {s['max_s']:.2f} s over {s['utterances']} utterances")
    if a.json:
        Path(a.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
