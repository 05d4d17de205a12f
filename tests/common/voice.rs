//! Speech for the voice tests: sentences espeak-ng speaks, converted by ffmpeg, streamed to the
//! server's WebSocket as a phone line would.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tungstenite::stream::MaybeTlsStream;
use tungstenite::{Message, WebSocket};

use super::Server;

pub fn need(tool: &str) {
    let ok = Command::new(tool)
        .arg(if tool == "ffmpeg" {
            "-version"
        } else {
            "--version"
        })
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        ok,
        "{tool} is not installed: the voice tests make their speech with espeak-ng and convert it with ffmpeg (apt-get install espeak-ng ffmpeg; .ci/run does)"
    );
}

pub fn espeak(dir: &Path, name: &str, voice: &str, text: &str) -> PathBuf {
    need("espeak-ng");
    let out = dir.join(format!("{name}.wav"));
    let st = Command::new("espeak-ng")
        .args(["-v", voice, "-s", "150", "-w"])
        .arg(&out)
        .arg(text)
        .status()
        .unwrap();
    assert!(st.success());
    out
}

pub fn ffmpeg(input: &Path, out: &Path, args: &[&str]) -> PathBuf {
    need("ffmpeg");
    let st = Command::new("ffmpeg")
        .args(["-loglevel", "error", "-y", "-i"])
        .arg(input)
        .args(args)
        .arg(out)
        .status()
        .unwrap();
    assert!(st.success(), "ffmpeg {args:?}");
    out.to_path_buf()
}

/// Raw little-endian 16-bit mono PCM at `rate`, as a phone line would send it.
pub fn pcm_s16(input: &Path, rate: u32) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let raw = dir.path().join("a.raw");
    ffmpeg(
        input,
        &raw,
        &["-ac", "1", "-ar", &rate.to_string(), "-f", "s16le"],
    );
    std::fs::read(raw).unwrap()
}

pub fn voice_server(extra: &[(&str, &str)]) -> Server {
    // One thread per decoder: these tests run side by side, four servers on a 2-core machine,
    // and whisper.cpp's threads spin at every graph node's barrier. With more threads than
    // cores a spinning thread holds a core that the one it waits for needs, and a few seconds
    // of audio took minutes (a CI run timed out this way).
    let mut env = vec![("KEFU_ASR", "whisper-base"), ("KEFU_VOICE_THREADS", "1")];
    env.extend_from_slice(extra);
    Server::start_with(&env)
}

pub type Ws = WebSocket<MaybeTlsStream<TcpStream>>;

pub fn connect(s: &Server) -> Ws {
    connect_with(s, &[]).expect("websocket handshake")
}

/// The handshake with extra headers (a key, a customer), or the HTTP status it was refused with.
pub fn connect_with(s: &Server, headers: &[(&str, &str)]) -> Result<Ws, u16> {
    use tungstenite::client::IntoClientRequest;
    let url = format!("{}/v1/voice/stream", s.base.replacen("http", "ws", 1));
    let mut req = url.into_client_request().unwrap();
    for (k, v) in headers {
        let name = tungstenite::http::HeaderName::from_bytes(k.as_bytes()).unwrap();
        req.headers_mut().insert(name, v.parse().unwrap());
    }
    match tungstenite::connect(req) {
        Ok((ws, _)) => {
            if let MaybeTlsStream::Plain(t) = ws.get_ref() {
                t.set_read_timeout(Some(Duration::from_secs(120))).unwrap();
            }
            Ok(ws)
        }
        Err(tungstenite::Error::Http(res)) => Err(res.status().as_u16()),
        Err(e) => panic!("websocket handshake: {e}"),
    }
}

pub fn send_json(ws: &mut Ws, v: Value) {
    ws.send(Message::Text(v.to_string().into())).unwrap();
}

/// The next JSON message (or `{"type":"close", code, reason}` for a close frame).
pub fn next(ws: &mut Ws) -> Value {
    loop {
        match ws.read() {
            Ok(Message::Text(t)) => return serde_json::from_str(&t).unwrap(),
            Ok(Message::Close(f)) => {
                return json!({"type": "close", "code": f.as_ref().map(|f| u16::from(f.code)), "reason": f.map(|f| f.reason.to_string())});
            }
            Ok(_) => continue,
            Err(e) => return json!({"type": "gone", "error": e.to_string()}),
        }
    }
}

/// Sends audio in 20 ms frames, `speedup` times faster than real time, collecting whatever the
/// server says meanwhile (with the time since the first frame).
pub fn stream_audio(ws: &mut Ws, pcm: &[u8], rate: usize, speedup: u32) -> Vec<(Duration, Value)> {
    let frame = rate / 50 * 2;
    let started = Instant::now();
    let mut got = Vec::new();
    if let MaybeTlsStream::Plain(t) = ws.get_ref() {
        t.set_nonblocking(true).unwrap();
    }
    for chunk in pcm.chunks(frame) {
        ws.send(Message::Binary(chunk.to_vec().into())).unwrap();
        std::thread::sleep(Duration::from_millis(20 / speedup as u64));
        while let Ok(Message::Text(t)) = ws.read() {
            got.push((started.elapsed(), serde_json::from_str(&t).unwrap()));
        }
    }
    if let MaybeTlsStream::Plain(t) = ws.get_ref() {
        t.set_nonblocking(false).unwrap();
    }
    got
}
