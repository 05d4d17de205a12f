//! Voice: file transcription (OpenAI's API, also through the official client) and live
//! streaming over a WebSocket, with the real multilingual Whisper base (converted from the
//! CTranslate2 package to ggml), on speech with known text: sentences espeak-ng speaks here
//! (English, and Mandarin with the pinyin voice), some converted to MP3, OGG/Opus and FLAC by
//! ffmpeg, and pytest-audioeval's recordings. `.ci/run` installs espeak-ng and ffmpeg.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::voice::*;
use common::*;
use kefu::speech::score::{char_error_rate as cer, word_error_rate as wer};
use serde_json::{Value, json};
use tungstenite::Message;

const EN: [&str; 3] = [
    "Hello, I ordered a laptop last week and it still has not arrived.",
    "I would like a refund for my broken headphones, please.",
    "My internet connection keeps dropping every evening.",
];
const ZH_SPOKEN: &str = "你好，我想查询我的订单。";

fn transcribe(s: &Server, file: &Path, fields: &[(&str, &str)]) -> (u16, Value, String) {
    let name = file.file_name().unwrap().to_string_lossy().to_string();
    let mut form = reqwest::blocking::multipart::Form::new().part(
        "file",
        reqwest::blocking::multipart::Part::bytes(std::fs::read(file).unwrap()).file_name(name),
    );
    for (k, v) in fields {
        form = form.text(k.to_string(), v.to_string());
    }
    let res = s
        .req("POST", "/v1/audio/transcriptions", None)
        .timeout(Duration::from_secs(300))
        .multipart(form)
        .send()
        .unwrap();
    let status = res.status().as_u16();
    let text = res.text().unwrap();
    let v = serde_json::from_str(&text).unwrap_or(Value::Null);
    (status, v, text)
}

fn audioeval(name: &str) -> (PathBuf, String) {
    let dir = std::env::var("KEFU_MODELS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            PathBuf::from(std::env::var("HOME").unwrap()).join(".cache/kefu/models")
        });
    let st = kefu()
        .args(["models", "fetch", "audioeval-samples"])
        .status()
        .unwrap();
    assert!(st.success(), "fetching pytest-audioeval's clips");
    let d = dir.join("audioeval-samples");
    let text = std::fs::read_to_string(d.join(format!("{name}.txt"))).unwrap();
    (d.join(format!("{name}.wav")), text.trim().to_string())
}

#[test]
fn files_in_every_format_transcribe_with_low_error_rates() {
    let s = voice_server(&[]);
    let dir = tempfile::tempdir().unwrap();

    // English from espeak-ng, in four containers and codecs at four sample rates.
    let mut total = 0.0;
    for (i, text) in EN.iter().enumerate() {
        let wav = espeak(dir.path(), &format!("en{i}"), "en-us", text);
        let (st, v, _) = transcribe(&s, &wav, &[("model", "whisper-1")]);
        assert_eq!(st, 200, "{v}");
        let e = wer(text, v["text"].as_str().unwrap());
        eprintln!("en{i}: WER {e:.2}: {}", v["text"]);
        assert!(e <= 0.25, "WER {e} for {:?} -> {}", text, v["text"]);
        total += e;
    }
    assert!(total / EN.len() as f64 <= 0.15, "mean WER {}", total / 3.0);
    let wav = dir.path().join("en0.wav");
    let variants = [
        ffmpeg(
            &wav,
            &dir.path().join("en0.mp3"),
            &["-ar", "44100", "-ac", "2"],
        ),
        ffmpeg(
            &wav,
            &dir.path().join("en0.ogg"),
            &["-c:a", "libopus", "-ar", "48000"],
        ),
        ffmpeg(&wav, &dir.path().join("en0.flac"), &["-ar", "24000"]),
    ];
    for f in &variants {
        let (st, v, _) = transcribe(&s, f, &[]);
        assert_eq!(st, 200, "{}: {v}", f.display());
        let e = wer(EN[0], v["text"].as_str().unwrap());
        eprintln!("{}: WER {e:.2}: {}", f.display(), v["text"]);
        assert!(e <= 0.25, "{}: WER {e}: {}", f.display(), v["text"]);
    }

    // Mandarin: pytest-audioeval's recordings, and espeak-ng's (robotic) pinyin voice.
    // The pangram is classical Chinese (天地玄黄…), hard for base: its bound is looser.
    for (name, bound) in [("zh-nihao_shijie", 0.1), ("zh-pangrama", 0.45)] {
        let (wav, truth) = audioeval(name);
        let (st, v, _) = transcribe(&s, &wav, &[("response_format", "verbose_json")]);
        assert_eq!(st, 200, "{v}");
        let c = cer(&truth, v["text"].as_str().unwrap());
        eprintln!("{name}: CER {c:.2}: {}", v["text"]);
        assert_eq!(
            v["language"], "chinese",
            "language detected for {name}: {v}"
        );
        assert!(c <= bound, "{name}: CER {c}: {}", v["text"]);
    }
    let zh = espeak(dir.path(), "zh", "cmn-latn-pinyin", ZH_SPOKEN);
    let (st, v, _) = transcribe(&s, &zh, &[("language", "zh")]);
    assert_eq!(st, 200, "{v}");
    let c = cer(ZH_SPOKEN, v["text"].as_str().unwrap());
    eprintln!("espeak zh: CER {c:.2}: {}", v["text"]);
    assert!(c <= 0.7, "espeak Mandarin CER {c}: {}", v["text"]);

    // Formats: text, srt and vtt carry the same words; verbose_json has times.
    let (st, _, text) = transcribe(&s, &wav, &[("response_format", "text")]);
    assert_eq!(st, 200);
    assert!(wer(EN[0], &text) <= 0.25, "{text}");
    let (_, _, srt) = transcribe(&s, &wav, &[("response_format", "srt")]);
    assert!(srt.starts_with("1\n00:00:0"), "{srt}");
    assert!(srt.contains(" --> "), "{srt}");
    let (_, _, vtt) = transcribe(&s, &wav, &[("response_format", "vtt")]);
    assert!(vtt.starts_with("WEBVTT\n\n00:00:0"), "{vtt}");
    let (_, v, _) = transcribe(
        &s,
        &wav,
        &[
            ("response_format", "verbose_json"),
            ("timestamp_granularities[]", "word"),
        ],
    );
    let dur = v["duration"].as_f64().unwrap();
    assert!((3.0..8.0).contains(&dur), "{v}");
    let ws = v["words"].as_array().unwrap();
    assert!(ws.len() >= 8, "{v}");
    assert!(
        ws.windows(2)
            .all(|w| w[0]["start"].as_f64() <= w[1]["start"].as_f64()),
        "{v}"
    );
    assert!(
        ws.last().unwrap()["end"].as_f64().unwrap() <= dur + 0.5,
        "{v}"
    );
}

#[test]
fn the_official_openai_client_transcribes() {
    let s = keys_and("none", &[("KEFU_ASR", "whisper-base")]);
    let dir = tempfile::tempdir().unwrap();
    let wav = espeak(dir.path(), "en", "en-us", EN[1]);
    let mp3 = ffmpeg(&wav, &dir.path().join("en.mp3"), &[]);
    let pythonpath = openai_pythonpath();
    let mut cmd = Command::new("python3");
    cmd.arg(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/openai_transcribe.py"
    ))
    .arg(&s.base)
    .arg(AGENT)
    .arg(&mp3);
    if let Some(p) = pythonpath {
        cmd.env("PYTHONPATH", p);
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    eprintln!("{v:#}");
    assert!(wer(EN[1], v["json"].as_str().unwrap()) <= 0.25, "{v}");
    assert_eq!(v["verbose"]["language"], "english");
    assert!(!v["verbose"]["segments"].as_array().unwrap().is_empty());
    assert!(v["verbose"]["words"].as_array().unwrap().len() >= 6, "{v}");
    assert!(v["srt"].as_str().unwrap().contains(" --> "));
    assert!(wer(EN[1], v["text"].as_str().unwrap()) <= 0.25);
    assert_eq!(v["bad_language"]["status"], 422, "{v}");
    assert_eq!(
        v["bad_language"]["body"]["error"]["code"],
        "invalid_request"
    );
}

#[test]
fn a_live_stream_gives_partials_then_finals_that_reach_the_conversation() {
    let s = voice_server(&[]);
    let dir = tempfile::tempdir().unwrap();
    // Two sentences with 1.5 s of silence between them, at 16 kHz. (At a phone line's 8 kHz
    // espeak-ng's voice loses enough that Whisper base mishears words: see benches/README.md.)
    let a = espeak(dir.path(), "a", "en-us", EN[0]);
    let b = espeak(
        dir.path(),
        "b",
        "en-us",
        "This is the worst service I have ever had, I am really angry.",
    );
    let rate = 16000;
    let silence = vec![0u8; rate * 2 * 3 / 2];
    let mut pcm = pcm_s16(&a, rate as u32);
    pcm.extend_from_slice(&silence);
    pcm.extend(pcm_s16(&b, rate as u32));
    pcm.extend_from_slice(&silence);

    let mut ws = connect(&s);
    send_json(
        &mut ws,
        json!({"type": "start", "sample_rate": rate, "encoding": "pcm_s16le",
        "language": "en", "conversation_id": "call-1", "customer_id": "cust-9"}),
    );
    let started = next(&mut ws);
    assert_eq!(started["type"], "started", "{started}");
    assert_eq!(started["model"], "whisper-base");
    let mut got = stream_audio(&mut ws, &pcm, rate, 2);
    send_json(&mut ws, json!({"type": "stop"}));
    let stopped_at = Instant::now();
    loop {
        let m = next(&mut ws);
        let done = matches!(m["type"].as_str(), Some("done" | "close" | "gone"));
        got.push((stopped_at.elapsed(), m));
        if done {
            break;
        }
    }
    for (t, m) in &got {
        eprintln!("{:>6.2}s {m}", t.as_secs_f32());
    }
    let kinds: Vec<&str> = got.iter().filter_map(|(_, m)| m["type"].as_str()).collect();
    assert_eq!(kinds.last(), Some(&"done"), "{kinds:?}");
    let finals: Vec<&Value> = got
        .iter()
        .map(|(_, m)| m)
        .filter(|m| m["type"] == "final")
        .collect();
    assert_eq!(finals.len(), 2, "{kinds:?}");
    assert_eq!(
        (
            finals[0]["utterance"].as_u64(),
            finals[1]["utterance"].as_u64()
        ),
        (Some(1), Some(2))
    );
    let first_final = kinds.iter().position(|k| *k == "final").unwrap();
    assert!(
        kinds[..first_final].contains(&"partial"),
        "a partial should arrive while the first sentence is spoken: {kinds:?}"
    );
    assert!(!kinds.contains(&"error"), "{kinds:?}");
    assert!(
        wer(EN[0], finals[0]["text"].as_str().unwrap()) <= 0.3,
        "{}",
        finals[0]
    );
    assert!(finals[0]["start_ms"].as_u64() < finals[0]["end_ms"].as_u64());
    assert!(finals[0]["end_ms"].as_u64() <= finals[1]["start_ms"].as_u64());
    // Each final is a stored customer turn with its sentiment; the angry one is negative.
    assert_eq!(finals[0]["turn"], 1, "{}", finals[0]);
    assert_eq!(finals[1]["turn"], 2);
    assert_eq!(finals[1]["sentiment"]["label"], "negative", "{}", finals[1]);
    let (st, conv) = s.call("GET", "/v1/conversations/call-1", None);
    assert_eq!(st, 200);
    let turns = conv["turns"].as_array().unwrap();
    assert_eq!(turns.len(), 2, "{conv}");
    assert!(
        turns
            .iter()
            .all(|t| t["channel"] == "voice" && t["role"] == "customer")
    );
    assert_eq!(turns[0]["text"], finals[0]["text"]);
    assert_eq!(conv["customer_id"], "cust-9");

    // The final matches file transcription of the same audio.
    let (_, file, _) = transcribe(&s, &a, &[("language", "en")]);
    let agreement = wer(
        file["text"].as_str().unwrap(),
        finals[0]["text"].as_str().unwrap(),
    );
    assert!(
        agreement <= 0.15,
        "stream {} vs file {}",
        finals[0]["text"],
        file["text"]
    );
}

#[test]
fn bad_audio_and_protocol_faults_get_clear_errors() {
    let s = voice_server(&[
        ("KEFU_VOICE_MAX_UPLOAD_BYTES", "1000000"),
        ("KEFU_VOICE_MAX_STREAMS", "2"),
        // Streams below stay open, silent, while other checks run.
        ("KEFU__VOICE__IDLE_SECONDS", "600"),
    ]);
    let dir = tempfile::tempdir().unwrap();
    let wav = espeak(dir.path(), "a", "en-us", EN[2]);

    // Files.
    let not_audio = dir.path().join("notes.wav");
    std::fs::write(&not_audio, "this is a text file, not audio").unwrap();
    let (st, v, _) = transcribe(&s, &not_audio, &[]);
    assert_eq!((st, error_code(&v).as_str()), (400, "invalid_audio"), "{v}");
    let truncated = dir.path().join("cut.wav");
    let bytes = std::fs::read(&wav).unwrap();
    std::fs::write(&truncated, &bytes[..bytes.len() / 3]).unwrap();
    let (st, v, _) = transcribe(&s, &truncated, &[]);
    assert_eq!((st, error_code(&v).as_str()), (400, "invalid_audio"), "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("ends early"),
        "{v}"
    );
    let empty = dir.path().join("empty.mp3");
    std::fs::write(&empty, b"").unwrap();
    let (st, v, _) = transcribe(&s, &empty, &[]);
    assert_eq!(st, 400, "{v}");
    let long = ffmpeg(
        &wav,
        &dir.path().join("long.wav"),
        &["-af", "apad=whole_dur=60"],
    );
    let (st, v, _) = transcribe(&s, &long, &[]);
    assert_eq!(
        (st, error_code(&v).as_str()),
        (413, "payload_too_large"),
        "{v}"
    );
    let (st, v, _) = transcribe(&s, &wav, &[("response_format", "mp4")]);
    assert_eq!(
        (st, error_code(&v).as_str()),
        (422, "invalid_request"),
        "{v}"
    );
    let (st, v, _) = transcribe(&s, &wav, &[("model", "whisper-large-v9")]);
    assert_eq!(
        (st, error_code(&v).as_str()),
        (404, "model_not_found"),
        "{v}"
    );
    let res = s
        .req("POST", "/v1/audio/transcriptions", None)
        .multipart(reqwest::blocking::multipart::Form::new().text("model", "whisper-1"))
        .send()
        .unwrap();
    let (st, v) = parts(res);
    assert_eq!(
        (st, error_code(&v).as_str()),
        (422, "invalid_request"),
        "{v}"
    );
    // whisper.cpp takes the prompt and the language as C strings: one NUL in either killed the
    // speech worker (every later transcription failed until a restart). Refused, and the
    // worker goes on transcribing.
    for field in [
        ("prompt", "VoltMart\u{0} SkyLink"),
        ("prompt", "bell\u{7}"),
        ("language", "e\u{0}n"),
        ("language", "en; rm"),
    ] {
        let (st, v, _) = transcribe(&s, &wav, &[field]);
        assert_eq!(
            (st, error_code(&v).as_str()),
            (422, "invalid_request"),
            "{field:?}: {v}"
        );
    }
    let (st, v, _) = transcribe(
        &s,
        &wav,
        &[("prompt", "VoltMart, SkyLink\n"), ("language", "en")],
    );
    assert_eq!(st, 200, "{v}");
    assert!(!v["text"].as_str().unwrap().trim().is_empty(), "{v}");

    // Streams: faults before and after start.
    let mut ws = connect(&s);
    ws.send(Message::Binary(vec![0u8; 640].into())).unwrap();
    assert_eq!(next(&mut ws)["code"], "not_started");
    send_json(
        &mut ws,
        json!({"type": "start", "sample_rate": 0, "encoding": "pcm_s16le"}),
    );
    let m = next(&mut ws);
    assert_eq!(m["code"], "bad_start", "{m}");
    assert!(m["message"].as_str().unwrap().contains("0 Hz"), "{m}");
    send_json(
        &mut ws,
        json!({"type": "start", "sample_rate": 16000, "encoding": "mp3"}),
    );
    assert_eq!(next(&mut ws)["code"], "bad_message");
    send_json(
        &mut ws,
        json!({"type": "start", "sample_rate": 16000, "encoding": "pcm_s16le", "language": "klingon"}),
    );
    assert_eq!(next(&mut ws)["code"], "bad_start");
    // f32 samples declared as 16-bit: refused once enough audio shows it.
    send_json(
        &mut ws,
        json!({"type": "start", "sample_rate": 16000, "encoding": "pcm_s16le"}),
    );
    assert_eq!(next(&mut ws)["type"], "started");
    let floats: Vec<u8> = (0..16000)
        .flat_map(|i| ((i as f32 * 0.03).sin() * 0.4).to_le_bytes())
        .collect();
    ws.send(Message::Binary(floats.into())).unwrap();
    let m = next(&mut ws);
    assert_eq!(m["code"], "bad_audio", "{m}");
    assert!(m["message"].as_str().unwrap().contains("pcm_f32le"), "{m}");
    assert_eq!(next(&mut ws)["type"], "done");

    // At most two streams: a third is refused with a reason; a vanished client frees its place.
    let mut one = connect(&s);
    send_json(
        &mut one,
        json!({"type": "start", "sample_rate": 16000, "encoding": "pcm_s16le"}),
    );
    assert_eq!(next(&mut one)["type"], "started");
    let mut two = connect(&s);
    send_json(
        &mut two,
        json!({"type": "start", "sample_rate": 16000, "encoding": "pcm_s16le"}),
    );
    assert_eq!(next(&mut two)["type"], "started");
    let pcm = pcm_s16(&wav, 16000);
    two.send(Message::Binary(pcm[..pcm.len() / 2].to_vec().into()))
        .unwrap();
    let mut three = connect(&s);
    let m = next(&mut three);
    assert_eq!(
        (m["type"].as_str(), m["code"].as_u64()),
        (Some("close"), Some(1013)),
        "{m}"
    );
    assert!(
        m["reason"]
            .as_str()
            .unwrap()
            .contains("voice streams are open"),
        "{m}"
    );
    drop(two); // mid-utterance, without a stop or a close
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mut again = connect(&s);
        send_json(
            &mut again,
            json!({"type": "start", "sample_rate": 16000, "encoding": "pcm_s16le"}),
        );
        let m = next(&mut again);
        if m["type"] == "started" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the vanished client's place was not freed: {m}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // And the server still transcribes; operators see the model and the open streams.
    let (st, v, _) = transcribe(&s, &wav, &[]);
    assert_eq!(st, 200, "{v}");
    let (_, ready) = s.call("GET", "/readyz", None);
    assert_eq!(ready["asr"], "ok (whisper-base)", "{ready}");
    // `one` is still open; `again` was dropped on leaving the loop, which the server sees soon.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let metrics = s.metrics();
        let open = metric(&metrics, "kefu_voice_streams_open", "role=\"asr\"");
        if open == Some(1.0) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "open streams {open:?}, expected 1"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    drop(one);
}

/// A request body sent in two parts, the second only when `gate` opens: an upload in progress.
struct Stalled {
    head: std::io::Cursor<Vec<u8>>,
    gate: Option<std::sync::mpsc::Receiver<()>>,
    tail: std::io::Cursor<Vec<u8>>,
}

impl std::io::Read for Stalled {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.head.read(buf)?;
        if n > 0 {
            return Ok(n);
        }
        if let Some(gate) = self.gate.take() {
            let _ = gate.recv();
        }
        self.tail.read(buf)
    }
}

/// Issue 16, findings 4 and 6: silence and slowness cannot hold the server. A started stream
/// that sends no audio is ended and its place freed; a file that is cheap to send and dear to
/// decode (192 kHz silence) is refused; uploads in flight are capped, the next one answered 503
/// with Retry-After.
#[test]
fn silence_and_slow_uploads_cannot_hold_the_server() {
    let s = voice_server(&[
        ("KEFU_VOICE_MAX_STREAMS", "1"),
        ("KEFU__VOICE__IDLE_SECONDS", "2"),
        ("KEFU__VOICE__MAX_AUDIO_SECONDS", "60"),
        ("KEFU__VOICE__MAX_UPLOADS", "1"),
    ]);
    let start = json!({"type": "start", "sample_rate": 16000, "encoding": "pcm_s16le"});
    let mut ws = connect(&s);
    send_json(&mut ws, start.clone());
    assert_eq!(next(&mut ws)["type"], "started");
    // Without the limit this read waits out its 120 s timeout and finds the socket still open.
    let m = next(&mut ws);
    assert_eq!(m["code"], "idle_timeout", "{m}");
    assert_eq!(next(&mut ws)["type"], "done");
    assert_eq!(next(&mut ws)["type"], "close");
    // The one place is free again.
    let mut again = connect(&s);
    send_json(&mut again, start);
    let m = next(&mut again);
    assert_eq!(m["type"], "started", "{m}");
    drop(again);

    // 50 s of 192 kHz silence: a few kilobytes of FLAC, under the 60 s limit by its clock, but
    // four times the samples of 48 kHz audio; above 48 kHz the limit shrinks in proportion.
    need("ffmpeg");
    let dir = tempfile::tempdir().unwrap();
    let bomb = dir.path().join("bomb.flac");
    let st = Command::new("ffmpeg")
        .args([
            "-loglevel",
            "error",
            "-y",
            "-f",
            "lavfi",
            "-i",
            "anullsrc=r=192000:cl=mono",
        ])
        .args(["-t", "50", "-c:a", "flac"])
        .arg(&bomb)
        .status()
        .unwrap();
    assert!(st.success());
    let (st, v, _) = transcribe(&s, &bomb, &[]);
    assert_eq!(
        (st, error_code(&v).as_str()),
        (400, "audio_too_long"),
        "{v}"
    );

    // One upload at a time: while one is still being sent, the next is refused.
    let wav = std::fs::read(espeak(dir.path(), "a", "en-us", EN[0])).unwrap();
    let boundary = "kefu-test-boundary";
    let mut head = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.wav\"\r\nContent-Type: audio/wav\r\n\r\n"
    )
    .into_bytes();
    let half = wav.len() / 2;
    head.extend_from_slice(&wav[..half]);
    let mut tail = wav[half..].to_vec();
    tail.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    let (open, gate) = std::sync::mpsc::channel();
    let body = Stalled {
        head: std::io::Cursor::new(head),
        gate: Some(gate),
        tail: std::io::Cursor::new(tail),
    };
    let url = format!("{}/v1/audio/transcriptions", s.base);
    let slow = std::thread::spawn(move || {
        reqwest::blocking::Client::new()
            .post(url)
            .header(
                "content-type",
                format!("multipart/form-data; boundary={boundary}"),
            )
            .body(reqwest::blocking::Body::new(body))
            .timeout(Duration::from_secs(300))
            .send()
            .map(|r| r.status().as_u16())
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    while metric(
        &s.metrics(),
        "kefu_transcriptions_in_flight",
        "role=\"asr\"",
    ) != Some(1.0)
    {
        assert!(Instant::now() < deadline, "the slow upload never started");
        std::thread::sleep(Duration::from_millis(100));
    }
    // Small: the server reads it whole with the headers, so its early answer is not lost to a
    // reset of unread bytes.
    let (content_type, body) = multipart_file("file", "b.wav", &wav[..64]);
    let (st, headers, v) = raw_request(
        &s.base,
        "POST",
        "/v1/audio/transcriptions",
        &[("content-type", &content_type)],
        &body,
    );
    assert_eq!((st, error_code(&v).as_str()), (503, "overloaded"), "{v}");
    assert_eq!(headers["retry-after"], "1");
    open.send(()).unwrap();
    assert_eq!(slow.join().unwrap().unwrap(), 200);
    let (st, v, _) = transcribe(&s, &dir.path().join("a.wav"), &[]);
    assert_eq!(st, 200, "{v}");
}

/// With keys, the voice routes need one like every other, and a channel's stream writes only its
/// own customer's conversation (issue 16).
#[test]
fn voice_needs_a_key_and_a_channel_writes_only_its_customer() {
    let s = voice_server(&[(
        "KEFU_API_KEYS",
        &format!("admin:{ADMIN},agent:{AGENT},channel:{CHANNEL}"),
    )]);
    let dir = tempfile::tempdir().unwrap();
    let wav = espeak(dir.path(), "a", "en-us", EN[1]);
    // Uploads.
    let upload = |key: Option<&str>| {
        let form = reqwest::blocking::multipart::Form::new().part(
            "file",
            reqwest::blocking::multipart::Part::bytes(std::fs::read(&wav).unwrap())
                .file_name("a.wav"),
        );
        parts(
            s.req("POST", "/v1/audio/transcriptions", key)
                .multipart(form)
                .send()
                .unwrap(),
        )
    };
    let (content_type, body) = multipart_file("file", "a.wav", &std::fs::read(&wav).unwrap()[..64]);
    let (st, _, v) = raw_request(
        &s.base,
        "POST",
        "/v1/audio/transcriptions",
        &[("content-type", &content_type)],
        &body,
    );
    assert_eq!((st, error_code(&v).as_str()), (401, "unauthorized"), "{v}");
    let (st, v) = upload(Some(CHANNEL));
    assert_eq!(st, 200, "{v}");
    // Streams: no key, no stream.
    assert_eq!(connect_with(&s, &[]).err(), Some(401));
    let bearer = format!("Bearer {CHANNEL}");
    let start = json!({"type": "start", "sample_rate": 16000, "encoding": "pcm_s16le", "conversation_id": "call-7"});
    // A channel naming no customer cannot write a conversation.
    let mut ws = connect_with(&s, &[("authorization", &bearer)]).unwrap();
    send_json(&mut ws, start.clone());
    let m = next(&mut ws);
    assert_eq!(m["code"], "invalid_request", "{m}");
    // Another customer's conversation does not exist for this one: the finals are not stored.
    s.call_as(
        CHANNEL,
        "POST",
        "/v1/conversations/call-7/turns",
        Some(json!({"customer_id": "owner", "channel": "voice", "text": "hello"})),
    );
    let mut ws = connect_with(
        &s,
        &[("authorization", &bearer), ("x-kefu-customer", "intruder")],
    )
    .unwrap();
    send_json(&mut ws, start);
    assert_eq!(next(&mut ws)["type"], "started");
    ws.send(Message::Binary(pcm_s16(&wav, 16000).into()))
        .unwrap();
    send_json(&mut ws, json!({"type": "stop"}));
    let mut finals = 0;
    loop {
        let m = next(&mut ws);
        match m["type"].as_str() {
            Some("final") => {
                assert_eq!(m["turn_error"]["code"], "not_found", "{m}");
                finals += 1;
            }
            Some("done") | Some("close") | Some("gone") => break,
            _ => {}
        }
    }
    assert!(finals >= 1);
    let (_, conv) = s.call_as(AGENT, "GET", "/v1/conversations/call-7", None);
    assert_eq!(conv["turns"].as_array().unwrap().len(), 1, "{conv}");
}

/// SIGKILL while a voice stream is mid-utterance and a streamed answer is mid-generation, then a
/// restart on the same data: every acknowledged turn (a final the client received) is there, the
/// unfinished utterance is not, the unfinished answer is there whole or not at all (its question,
/// answer and turns commit in one transaction), and the conversation goes on where it was.
#[test]
fn sigkill_mid_stream_and_mid_answer_keeps_every_acknowledged_turn() {
    let keys = format!("admin:{ADMIN},agent:{AGENT},channel:{CHANNEL}");
    let mut s = voice_server(&[
        ("KEFU_API_KEYS", &keys),
        ("KEFU_GENERATOR", "smollm2-135m"),
        ("KEFU__ANSWER__COMPOSE", "generate"),
    ]);
    let card = s.card(
        "Resetting the RT-AX58U router",
        "To factory-reset the RT-AX58U router, hold the recessed RESET button on the back for 10 seconds with a paperclip until the power LED blinks. The router restarts in about 2 minutes. The default Wi-Fi name and password are printed on the label under the router.",
        json!({}),
    );
    let dir = tempfile::tempdir().unwrap();
    let rate = 16000;
    let first = pcm_s16(&espeak(dir.path(), "a", "en-us", EN[0]), rate as u32);
    let second = pcm_s16(&espeak(dir.path(), "b", "en-us", EN[2]), rate as u32);
    let silence = vec![0u8; rate * 2 * 3 / 2];

    let bearer = format!("Bearer {CHANNEL}");
    let mut ws = connect_with(
        &s,
        &[("authorization", &bearer), ("x-kefu-customer", "cust-kill")],
    )
    .unwrap();
    send_json(
        &mut ws,
        json!({"type": "start", "sample_rate": rate, "encoding": "pcm_s16le", "language": "en", "conversation_id": "call-kill"}),
    );
    assert_eq!(next(&mut ws)["type"], "started");
    // The first utterance, then silence until its final (the acknowledgement) arrives.
    let mut got = stream_audio(&mut ws, &first, rate, 2);
    let deadline = Instant::now() + Duration::from_secs(120);
    while !got.iter().any(|(_, m)| m["type"] == "final") {
        assert!(Instant::now() < deadline, "no final: {got:?}");
        got.extend(stream_audio(&mut ws, &silence, rate, 2));
    }
    let acked = got
        .iter()
        .find(|(_, m)| m["type"] == "final")
        .map(|(_, m)| m.clone())
        .unwrap();
    assert_eq!(acked["turn"], 1, "{acked}");

    // A streamed answer in another conversation of the same customer, read to its first delta.
    let mut res = s
        .req("POST", "/v1/answer", Some(CHANNEL))
        .header("x-kefu-customer", "cust-kill")
        .json(
            &json!({"question": "How do I factory reset my router?", "channel": "chat",
            "conversation_id": "chat-kill", "stream": true, "seed": 3}),
        )
        .send()
        .unwrap();
    assert_eq!(res.status(), 200);
    let events = read_sse(&mut res, |e| e.event == "delta" || e.event == "done");
    let answer_done = events.iter().any(|e| e.event == "done");

    // The second utterance, cut off half-way (a partial at most), and the kill.
    let half = &second[..second.len() / 2];
    stream_audio(&mut ws, half, rate, 1);
    s.kill9();
    drop(ws);
    drop(res);

    // Restart without the models: the data is what is checked.
    s.set_env("KEFU_ASR", "none");
    s.set_env("KEFU_GENERATOR", "none");
    s.restart();
    let (st, conv) = s.call("GET", "/v1/conversations/call-kill", None);
    assert_eq!(st, 200, "{conv}");
    let turns = conv["turns"].as_array().unwrap();
    assert_eq!(turns.len(), 1, "only the acknowledged final: {conv}");
    assert_eq!(turns[0]["text"], acked["text"]);
    assert_eq!(conv["customer_id"], "cust-kill");
    let (st, chat) = s.call("GET", "/v1/conversations/chat-kill", None);
    match st {
        // Killed before the answer committed: nothing of it.
        404 => assert!(!answer_done, "an answer the client saw done is lost"),
        // Committed just before the kill: the question and the whole reply.
        200 => {
            let turns = chat["turns"].as_array().unwrap();
            assert_eq!(turns.len(), 2, "{chat}");
            assert_eq!(turns[0]["role"], "customer");
            assert_eq!(turns[1]["role"], "bot");
            assert!(!turns[1]["text"].as_str().unwrap().is_empty(), "{chat}");
        }
        other => panic!("{other}: {chat}"),
    }
    eprintln!("answer committed before the kill: {}", st == 200);
    let (st, c) = s.call("GET", &format!("/v1/cards/{card}"), None);
    assert_eq!((st, c["status"].as_str()), (200, Some("published")));
    // The conversation goes on: the next turn is number 2.
    let (st, t) = s.call_as(
        CHANNEL,
        "POST",
        "/v1/conversations/call-kill/turns",
        Some(json!({"customer_id": "cust-kill", "channel": "voice", "role": "customer", "text": "Are you still there?"})),
    );
    assert_eq!(st, 200, "{t}");
    let (_, conv) = s.call("GET", "/v1/conversations/call-kill", None);
    let texts: Vec<&str> = conv["turns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["text"].as_str().unwrap())
        .collect();
    assert_eq!(
        texts,
        [acked["text"].as_str().unwrap(), "Are you still there?"]
    );
}
