//! OpenAI-compatible transcription (`POST /v1/audio/transcriptions`): the multipart upload, read
//! within its limit; the form's fields; and the transcript in each of OpenAI's response formats.
//! The flow itself (model and language checks, decoding, transcription) is `desk::transcribe`.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use super::AppState;
use super::auth::Caller;
use super::error::{ApiError, ApiResult, ErrorBody};
use crate::desk::transcribe::TranscribeRequest;
use crate::error::{Error, ErrorCode};
use crate::runtime::asr::Transcript;

/// The parts of an OpenAI transcription request that this service reads.
#[derive(Default)]
struct TranscriptionForm {
    file: Option<(Option<String>, bytes::Bytes)>,
    model: Option<String>,
    language: Option<String>,
    prompt: Option<String>,
    response_format: Option<String>,
    granularities: Vec<String>,
}

fn multipart_error(e: axum::extract::multipart::MultipartError) -> ApiError {
    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::new(
            ErrorCode::PayloadTooLarge,
            format!(
                "the upload is larger than this server takes (voice.max_upload_bytes): {}",
                e.body_text()
            ),
        )
    } else {
        ApiError::new(ErrorCode::InvalidMultipart, e.body_text())
    }
}

/// The upload, at most `limit` bytes. An upload over the limit is read to its end (up to four
/// times the limit) before the 413 goes out: a client that is still sending when the server
/// answers sees a broken connection instead of the error, and that is no clear answer.
async fn read_upload(
    req: axum::extract::Request,
    limit: usize,
) -> ApiResult<axum::extract::Multipart> {
    use axum::extract::FromRequest;
    use futures::StreamExt;
    let too_large = |n: usize| {
        ApiError::new(
            ErrorCode::PayloadTooLarge,
            format!(
                "the upload is {n} bytes or more; this server takes at most {limit} (voice.max_upload_bytes)"
            ),
        )
    };
    let declared = req
        .headers()
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit.saturating_mul(4)) {
        return Err(too_large(declared.unwrap_or_default()));
    }
    let (parts, body) = req.into_parts();
    let mut stream = body.into_data_stream();
    let mut kept = Vec::new();
    let mut total = 0usize;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| ApiError::new(ErrorCode::BadRequest, e.to_string()))?;
        total += chunk.len();
        if total <= limit {
            kept.extend_from_slice(&chunk);
        } else if total > limit.saturating_mul(4) {
            break;
        }
    }
    if total > limit {
        return Err(too_large(total));
    }
    let req = axum::extract::Request::from_parts(parts, axum::body::Body::from(kept));
    axum::extract::Multipart::from_request(req, &())
        .await
        .map_err(|e| ApiError::new(ErrorCode::InvalidMultipart, e.body_text()))
}

async fn read_form(mut mp: axum::extract::Multipart) -> ApiResult<TranscriptionForm> {
    let mut f = TranscriptionForm::default();
    while let Some(field) = mp.next_field().await.map_err(multipart_error)? {
        let name = field.name().unwrap_or_default().to_string();
        if name == "file" {
            let file_name = field.file_name().map(str::to_string);
            f.file = Some((file_name, field.bytes().await.map_err(multipart_error)?));
            continue;
        }
        let text = field.text().await.map_err(multipart_error)?;
        match name.as_str() {
            "model" => f.model = Some(text),
            "language" => f.language = Some(text).filter(|l| !l.is_empty()),
            "prompt" => f.prompt = Some(text),
            "response_format" => f.response_format = Some(text),
            "timestamp_granularities[]" | "timestamp_granularities" => f.granularities.push(text),
            // temperature, stream, chunking_strategy, include[]...: accepted and ignored, as
            // OpenAI's clients send some of them unasked.
            _ => {}
        }
    }
    Ok(f)
}

/// Whisper's repetition measure: the text's bytes over their zlib-compressed size (a looping
/// hallucination compresses well, above about 2.4).
fn compression_ratio(text: &str) -> f64 {
    use std::io::Write;
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    let compressed = z
        .write_all(text.as_bytes())
        .and_then(|()| z.finish())
        .map_or(0, |c| c.len());
    text.len() as f64 / compressed.max(1) as f64
}

fn clock(ms: u64, sep: char) -> String {
    format!(
        "{:02}:{:02}:{:02}{sep}{:03}",
        ms / 3_600_000,
        ms / 60_000 % 60,
        ms / 1000 % 60,
        ms % 1000
    )
}

/// `POST /v1/audio/transcriptions`: OpenAI's transcription API. Multipart `file` (WAV, FLAC,
/// MP3, OGG/Vorbis or OGG/Opus; any rate and channel count), `model`, `language`, `prompt`,
/// `response_format` (json, text, srt, verbose_json, vtt) and `timestamp_granularities[]`
/// (segment, word).
#[utoipa::path(post, path = "/v1/audio/transcriptions", tag = "openai",
    responses((status = 200, description = "The transcript, in the requested format"),
              (status = 400, description = "Not audio, damaged, too long, or a bad form", body = ErrorBody),
              (status = 413, body = ErrorBody), (status = 422, body = ErrorBody),
              (status = 503, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn transcriptions(
    State(s): State<AppState>,
    _caller: Caller,
    req: axum::extract::Request,
) -> ApiResult<Response> {
    // Before reading an upload of up to voice.max_upload_bytes that could not be used.
    s.desk.speech()?;
    // Held until the transcript is sent: bytes, decoded audio and a decoder per upload.
    let max = s.config.voice.max_uploads;
    let _place = s.uploads.take(max).ok_or_else(|| {
        ApiError::new(
            ErrorCode::Overloaded,
            format!(
                "{max} transcriptions are in progress, the most this server takes at once; retry shortly"
            ),
        )
    })?;
    let mp = read_upload(req, s.config.voice.max_upload_bytes).await?;
    let form = read_form(mp).await?;
    let Some((file_name, audio)) = form.file else {
        return Err(Error::invalid(
            "the form has no `file` part: send the audio as multipart field `file`",
        )
        .into());
    };
    let format: ResponseFormat = form
        .response_format
        .as_deref()
        .unwrap_or("json")
        .parse()
        .map_err(|_| {
            Error::invalid(format!(
                "response_format {:?}: use {}",
                form.response_format.as_deref().unwrap_or_default(),
                ResponseFormat::list()
            ))
        })?;
    if let Some(g) = form
        .granularities
        .iter()
        .find(|g| !matches!(g.as_str(), "word" | "segment"))
    {
        return Err(Error::invalid(format!(
            "timestamp_granularities {g:?}: use segment or word"
        ))
        .into());
    }
    let words = form.granularities.iter().any(|g| g == "word");
    let (t, duration) = s
        .desk
        .transcribe(TranscribeRequest {
            audio,
            file_name,
            model: form.model,
            language: form.language,
            prompt: form.prompt,
            words,
        })
        .await?;
    Ok(match format {
        ResponseFormat::Text => plain(format!("{}\n", t.text), "text/plain; charset=utf-8"),
        ResponseFormat::Srt => plain(subtitles(&t, false), "application/x-subrip; charset=utf-8"),
        ResponseFormat::Vtt => plain(subtitles(&t, true), "text/vtt; charset=utf-8"),
        ResponseFormat::VerboseJson => Json(verbose_json(&t, duration, words)).into_response(),
        ResponseFormat::Json => Json(serde_json::json!({"text": t.text})).into_response(),
    })
}

/// The `response_format`s OpenAI's transcription API offers.
#[derive(Debug, Clone, Copy, strum::EnumString, strum::IntoStaticStr, strum::VariantArray)]
#[strum(serialize_all = "snake_case")]
enum ResponseFormat {
    Json,
    Text,
    Srt,
    VerboseJson,
    Vtt,
}

impl ResponseFormat {
    fn list() -> String {
        use strum::VariantArray;
        Self::VARIANTS
            .iter()
            .map(|f| <&str>::from(*f))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

fn plain(body: String, mime: &'static str) -> Response {
    ([(axum::http::header::CONTENT_TYPE, mime)], body).into_response()
}

/// SubRip (numbered cues, comma before the milliseconds) or WebVTT (a header, a dot).
fn subtitles(t: &Transcript, vtt: bool) -> String {
    let mut out = String::from(if vtt { "WEBVTT\n\n" } else { "" });
    let sep = if vtt { '.' } else { ',' };
    for (i, seg) in t.segments.iter().enumerate() {
        if !vtt {
            out.push_str(&format!("{}\n", i + 1));
        }
        out.push_str(&format!(
            "{} --> {}\n{}\n\n",
            clock(seg.start_ms, sep),
            clock(seg.end_ms, sep),
            seg.text
        ));
    }
    out
}

/// OpenAI's `verbose_json`: the language's full name, the duration, segments with Whisper's
/// quality measures, and word times when asked for.
fn verbose_json(t: &Transcript, duration: f64, words: bool) -> serde_json::Value {
    let language = whisper_rs::get_lang_id(&t.language)
        .and_then(whisper_rs::get_lang_str_full)
        .unwrap_or(&t.language);
    let segments: Vec<serde_json::Value> = t
        .segments
        .iter()
        .enumerate()
        .map(|(i, seg)| {
            // whisper.cpp does not say which 30 s window (`seek`, in 10 ms frames) or
            // which fallback temperature made a segment: the window is taken from the
            // segment's start, the temperature is the first (greedy) one.
            serde_json::json!({
                "id": i, "seek": seg.start_ms / 30_000 * 3000,
                "start": seg.start_ms as f64 / 1000.0, "end": seg.end_ms as f64 / 1000.0,
                "text": seg.text, "tokens": seg.tokens, "temperature": 0.0,
                "avg_logprob": seg.avg_logprob,
                "compression_ratio": compression_ratio(&seg.text),
                "no_speech_prob": seg.no_speech_prob,
            })
        })
        .collect();
    let mut body = serde_json::json!({
        "task": "transcribe", "language": language, "duration": duration,
        "text": t.text, "segments": segments,
    });
    if words {
        body["words"] = t
            .segments
            .iter()
            .flat_map(|seg| seg.words.iter())
            .map(|w| serde_json::json!({"word": w.word, "start": w.start_ms as f64 / 1000.0, "end": w.end_ms as f64 / 1000.0}))
            .collect();
    }
    body
}
