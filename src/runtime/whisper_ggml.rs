//! CTranslate2 Whisper → whisper.cpp ggml.
//!
//! The Whisper weights that the package index carries are CTranslate2 (faster-whisper) folders;
//! whisper.cpp, which whisper-rs runs, reads only its own ggml file. No crate converts one into
//! the other, so this module does, following whisper.cpp's `convert-pt-to-ggml.py` for the
//! output and CTranslate2's `WhisperSpec` for the input:
//!
//! - CTranslate2 `model.bin` (version 6): `u32 version`, the spec name, `u32 revision`,
//!   `u32 count`, then per variable `name`, `u8 rank`, `u32 dims[rank]`, `u8 dtype`,
//!   `u32 bytes`, data; then aliases. Strings are `u16 length` (with the NUL) + bytes.
//! - Names differ (`encoder/layer_0/self_attention/linear_0/weight` is whisper's
//!   `encoder.blocks.0.attn.{query,key,value}.weight` fused), and attention projections are
//!   fused (q,k,v in self-attention; k,v in cross-attention) and must be split. Whisper has no
//!   key bias, so CTranslate2's fused bias has zeros where it would be; they are dropped.
//! - ggml's file needs the mel filter bank and the byte-level vocabulary, which CTranslate2
//!   folders lack: they come from openai-whisper's `mel_filters.npz` and `*.tiktoken`.
//! - whisper.cpp reads each tensor straight into a tensor of its own type: 1-D tensors,
//!   positional embeddings and conv biases (shaped `[n, 1]`) as f32, everything else f16.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::path::Path;

use base64::Engine;
use half::f16;

/// Bumped when the output changes, so that files written by an older converter are redone.
pub const CONVERTER_VERSION: u32 = 1;

const GGML_MAGIC: u32 = 0x6767_6d6c;

#[derive(Debug, thiserror::Error)]
pub enum ConvertError {
    #[error("{path}: {message}")]
    Input { path: String, message: String },
    #[error("cannot write {path}: {source}")]
    Output {
        path: String,
        source: std::io::Error,
    },
}

/// One tensor of the CTranslate2 model.
struct Var {
    dims: Vec<usize>,
    dtype: u8,
    data: Vec<u8>,
}

// CTranslate2's DataType enum.
const CT2_F32: u8 = 0;
const CT2_I8: u8 = 1;
const CT2_I16: u8 = 2;
const CT2_I32: u8 = 3;
const CT2_F16: u8 = 4;

impl Var {
    fn len(&self) -> usize {
        self.dims.iter().product()
    }

    fn values(&self) -> Result<Vec<f32>, String> {
        let d = &self.data;
        Ok(match self.dtype {
            CT2_F16 => d
                .chunks_exact(2)
                .map(|c| f16::from_le_bytes([c[0], c[1]]).to_f32())
                .collect(),
            CT2_F32 => d
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
            t => {
                return Err(format!(
                    "weights of CTranslate2 type {t} (only float16/float32 models convert; int8-quantized ones do not)"
                ));
            }
        })
    }

    fn scalar(&self) -> Option<i64> {
        let d = &self.data;
        match (self.dtype, d.len()) {
            (CT2_I8, 1) => Some(d[0] as i8 as i64),
            (CT2_I16, 2) => Some(i16::from_le_bytes([d[0], d[1]]) as i64),
            (CT2_I32, 4) => Some(i32::from_le_bytes([d[0], d[1], d[2], d[3]]) as i64),
            _ => None,
        }
    }
}

struct Reader<'a> {
    buf: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], String> {
        let end = self
            .at
            .checked_add(n)
            .filter(|&e| e <= self.buf.len())
            .ok_or_else(|| format!("truncated at byte {} (wanted {n} more)", self.at))?;
        let s = &self.buf[self.at..end];
        self.at = end;
        Ok(s)
    }
    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, String> {
        let b = self.take(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }
    fn u32(&mut self) -> Result<u32, String> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn string(&mut self) -> Result<String, String> {
        let n = self.u16()? as usize;
        let b = self.take(n)?;
        let b = b.strip_suffix(&[0]).unwrap_or(b);
        String::from_utf8(b.to_vec()).map_err(|_| "a name is not UTF-8".to_string())
    }
}

fn read_ct2(buf: &[u8]) -> Result<BTreeMap<String, Var>, String> {
    let mut r = Reader { buf, at: 0 };
    let version = r.u32()?;
    if !(5..=6).contains(&version) {
        return Err(format!(
            "not a CTranslate2 model (binary version {version}, expected 5 or 6)"
        ));
    }
    let spec = r.string()?;
    if spec != "WhisperSpec" {
        return Err(format!("a CTranslate2 {spec}, not a Whisper model"));
    }
    let _revision = r.u32()?;
    let count = r.u32()? as usize;
    let mut vars = BTreeMap::new();
    for _ in 0..count {
        let name = r.string()?;
        let rank = r.u8()? as usize;
        let dims = (0..rank)
            .map(|_| r.u32().map(|d| d as usize))
            .collect::<Result<Vec<_>, _>>()?;
        let dtype = r.u8()?;
        let bytes = r.u32()? as usize;
        let data = r.take(bytes)?.to_vec();
        vars.insert(name, Var { dims, dtype, data });
    }
    Ok(vars)
}

/// whisper.cpp's hyper-parameters, read off the tensors' shapes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hparams {
    pub n_vocab: usize,
    pub n_audio_ctx: usize,
    pub n_audio_state: usize,
    pub n_audio_head: usize,
    pub n_audio_layer: usize,
    pub n_text_ctx: usize,
    pub n_text_state: usize,
    pub n_text_head: usize,
    pub n_text_layer: usize,
    pub n_mels: usize,
}

fn hparams(vars: &BTreeMap<String, Var>) -> Result<Hparams, String> {
    let dims = |name: &str| {
        vars.get(name)
            .map(|v| v.dims.clone())
            .ok_or_else(|| format!("no tensor {name}"))
    };
    let heads = |name: &str| {
        vars.get(name)
            .and_then(Var::scalar)
            .filter(|&h| h > 0)
            .map(|h| h as usize)
            .ok_or_else(|| format!("no {name}"))
    };
    let layers = |side: &str| {
        (0..)
            .take_while(|i| vars.contains_key(&format!("{side}/layer_{i}/ffn/linear_0/weight")))
            .count()
    };
    let conv1 = dims("encoder/conv1/weight")?;
    let emb = dims("decoder/embeddings/weight")?;
    let e_pos = dims("encoder/position_encodings/encodings")?;
    let d_pos = dims("decoder/position_encodings/encodings")?;
    if conv1.len() != 3 || emb.len() != 2 || e_pos.len() != 2 || d_pos.len() != 2 {
        return Err("unexpected tensor ranks for a Whisper model".into());
    }
    Ok(Hparams {
        n_vocab: emb[0],
        n_audio_ctx: e_pos[0],
        n_audio_state: conv1[0],
        n_audio_head: heads("encoder/num_heads")?,
        n_audio_layer: layers("encoder"),
        n_text_ctx: d_pos[0],
        n_text_state: emb[1],
        n_text_head: heads("decoder/num_heads")?,
        n_text_layer: layers("decoder"),
        n_mels: conv1[1],
    })
}

/// A tensor ready for the ggml file, in whisper's (PyTorch) shape.
struct Out {
    name: String,
    shape: Vec<usize>,
    values: Vec<f32>,
    f16: bool,
}

/// Maps the CTranslate2 variables onto whisper.cpp's tensors, splitting fused projections.
fn tensors(vars: &BTreeMap<String, Var>, hp: &Hparams) -> Result<Vec<Out>, String> {
    let mut out = Vec::new();
    let get = |name: &str| -> Result<(&Var, Vec<f32>), String> {
        let v = vars.get(name).ok_or_else(|| format!("no tensor {name}"))?;
        Ok((v, v.values()?))
    };
    // Whole tensors: (ct2 name, whisper name).
    let push = |out: &mut Vec<Out>, from: &str, to: String| -> Result<(), String> {
        let (v, values) = get(from)?;
        let mut shape = v.dims.clone();
        let conv_bias = to.starts_with("encoder.conv") && to.ends_with(".bias");
        if conv_bias {
            shape.push(1);
        }
        out.push(Out {
            f16: shape.len() >= 2 && !conv_bias && !to.ends_with("positional_embedding"),
            name: to,
            shape,
            values,
        });
        Ok(())
    };
    // A fused [parts*n, ...] weight or bias, split into its parts in order (decoded once);
    // `None` drops a part (the zero key biases).
    let split = |out: &mut Vec<Out>, from: &str, to: &[Option<String>]| -> Result<(), String> {
        let (v, values) = get(from)?;
        let (rows, parts) = (v.dims[0], to.len());
        if rows % parts != 0 {
            return Err(format!("{from}: {rows} rows do not split into {parts}"));
        }
        let n = rows / parts;
        let width = v.len() / rows;
        let mut shape = v.dims.clone();
        shape[0] = n;
        for (k, name) in to.iter().enumerate() {
            if let Some(name) = name {
                out.push(Out {
                    f16: shape.len() >= 2,
                    name: name.clone(),
                    shape: shape.clone(),
                    values: values[k * n * width..(k + 1) * n * width].to_vec(),
                });
            }
        }
        Ok(())
    };
    for name in ["conv1", "conv2"] {
        for p in ["weight", "bias"] {
            push(
                &mut out,
                &format!("encoder/{name}/{p}"),
                format!("encoder.{name}.{p}"),
            )?;
        }
    }
    push(
        &mut out,
        "encoder/position_encodings/encodings",
        "encoder.positional_embedding".into(),
    )?;
    push(
        &mut out,
        "encoder/layer_norm/gamma",
        "encoder.ln_post.weight".into(),
    )?;
    push(
        &mut out,
        "encoder/layer_norm/beta",
        "encoder.ln_post.bias".into(),
    )?;
    push(
        &mut out,
        "decoder/embeddings/weight",
        "decoder.token_embedding.weight".into(),
    )?;
    push(
        &mut out,
        "decoder/position_encodings/encodings",
        "decoder.positional_embedding".into(),
    )?;
    push(
        &mut out,
        "decoder/layer_norm/gamma",
        "decoder.ln.weight".into(),
    )?;
    push(
        &mut out,
        "decoder/layer_norm/beta",
        "decoder.ln.bias".into(),
    )?;

    let sides = [("encoder", hp.n_audio_layer), ("decoder", hp.n_text_layer)];
    for (side, layers) in sides {
        for i in 0..layers {
            let c = format!("{side}/layer_{i}");
            let w = format!("{side}.blocks.{i}");
            let mut norms = vec![
                ("self_attention/layer_norm", "attn_ln"),
                ("ffn/layer_norm", "mlp_ln"),
            ];
            if side == "decoder" {
                norms.push(("attention/layer_norm", "cross_attn_ln"));
            }
            for (from, to) in norms {
                push(
                    &mut out,
                    &format!("{c}/{from}/gamma"),
                    format!("{w}.{to}.weight"),
                )?;
                push(
                    &mut out,
                    &format!("{c}/{from}/beta"),
                    format!("{w}.{to}.bias"),
                )?;
            }
            let qkv = format!("{c}/self_attention/linear_0");
            let attn = |name: &str, p: &str| Some(format!("{w}.attn.{name}.{p}"));
            split(
                &mut out,
                &format!("{qkv}/weight"),
                &[
                    attn("query", "weight"),
                    attn("key", "weight"),
                    attn("value", "weight"),
                ],
            )?;
            split(
                &mut out,
                &format!("{qkv}/bias"),
                &[attn("query", "bias"), None, attn("value", "bias")],
            )?;
            for p in ["weight", "bias"] {
                push(
                    &mut out,
                    &format!("{c}/self_attention/linear_1/{p}"),
                    format!("{w}.attn.out.{p}"),
                )?;
                push(
                    &mut out,
                    &format!("{c}/ffn/linear_0/{p}"),
                    format!("{w}.mlp.0.{p}"),
                )?;
                push(
                    &mut out,
                    &format!("{c}/ffn/linear_1/{p}"),
                    format!("{w}.mlp.2.{p}"),
                )?;
            }
            if side == "decoder" {
                for p in ["weight", "bias"] {
                    push(
                        &mut out,
                        &format!("{c}/attention/linear_0/{p}"),
                        format!("{w}.cross_attn.query.{p}"),
                    )?;
                    push(
                        &mut out,
                        &format!("{c}/attention/linear_2/{p}"),
                        format!("{w}.cross_attn.out.{p}"),
                    )?;
                }
                let kv = format!("{c}/attention/linear_1");
                let cross = |name: &str, p: &str| Some(format!("{w}.cross_attn.{name}.{p}"));
                split(
                    &mut out,
                    &format!("{kv}/weight"),
                    &[cross("key", "weight"), cross("value", "weight")],
                )?;
                split(
                    &mut out,
                    &format!("{kv}/bias"),
                    &[None, cross("value", "bias")],
                )?;
            }
        }
    }
    Ok(out)
}

/// Reads one `.npy` array of float32 out of an `.npz` archive: (shape, values).
fn read_npz_f32(path: &Path, member: &str) -> Result<(Vec<usize>, Vec<f32>), String> {
    let file = File::open(path).map_err(|e| e.to_string())?;
    let mut zip = zip::ZipArchive::new(file).map_err(|e| format!("not an npz archive: {e}"))?;
    let mut entry = zip
        .by_name(&format!("{member}.npy"))
        .map_err(|_| format!("has no array {member}"))?;
    let mut buf = Vec::new();
    entry.read_to_end(&mut buf).map_err(|e| e.to_string())?;
    // .npy: magic, version (u8 u8), header length (u16 for v1, u32 for v2+), a Python dict.
    if !buf.starts_with(b"\x93NUMPY") || buf.len() < 10 {
        return Err(format!("{member} is not a .npy array"));
    }
    let (hlen, hstart) = if buf[6] == 1 {
        (u16::from_le_bytes([buf[8], buf[9]]) as usize, 10)
    } else {
        (
            u32::from_le_bytes([buf[8], buf[9], buf[10], buf[11]]) as usize,
            12,
        )
    };
    let header = std::str::from_utf8(buf.get(hstart..hstart + hlen).ok_or("truncated header")?)
        .map_err(|_| "header is not text")?;
    if !header.contains("'descr': '<f4'") || !header.contains("'fortran_order': False") {
        return Err(format!(
            "{member}: expected little-endian float32 in C order, header {header}"
        ));
    }
    let shape_text = header
        .split("'shape': (")
        .nth(1)
        .and_then(|s| s.split(')').next())
        .ok_or("header has no shape")?;
    let shape = shape_text
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<usize>()
                .map_err(|_| format!("bad shape {shape_text}"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let data = &buf[hstart + hlen..];
    let n: usize = shape.iter().product();
    if data.len() != n * 4 {
        return Err(format!(
            "{member}: {} bytes for shape {shape:?}",
            data.len()
        ));
    }
    let values = data
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    Ok((shape, values))
}

/// The byte strings of a `.tiktoken` file (`base64 rank` per line), in rank order.
fn read_tiktoken(path: &Path) -> Result<Vec<Vec<u8>>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
    let mut tokens = Vec::new();
    for (i, line) in text.lines().filter(|l| !l.is_empty()).enumerate() {
        let (b64, rank) = line
            .split_once(' ')
            .ok_or_else(|| format!("line {}: expected `base64 rank`", i + 1))?;
        if rank.trim().parse::<usize>() != Ok(i) {
            return Err(format!("line {}: ranks are not in order", i + 1));
        }
        // Padding is optional here: multilingual.tiktoken's last entry is a bare "=" (an empty
        // token), which Python's b64decode reads as b"".
        tokens.push(
            base64::engine::general_purpose::STANDARD_NO_PAD
                .decode(b64.trim_end_matches('='))
                .map_err(|e| format!("line {}: {e}", i + 1))?,
        );
    }
    Ok(tokens)
}

/// What a conversion produced, for the log and the tests.
#[derive(Debug)]
pub struct Converted {
    pub hparams: Hparams,
    pub tensors: usize,
    pub vocab: usize,
}

/// Converts a CTranslate2 Whisper `model.bin` into a whisper.cpp ggml file at `out`
/// (written beside it and renamed into place, so a crash never leaves half a model).
pub fn convert(
    ct2_model: &Path,
    mel_filters: &Path,
    tiktoken: &Path,
    out: &Path,
) -> Result<Converted, ConvertError> {
    let input = |p: &Path, message: String| ConvertError::Input {
        path: p.display().to_string(),
        message,
    };
    let buf = std::fs::read(ct2_model).map_err(|e| input(ct2_model, e.to_string()))?;
    let vars = read_ct2(&buf).map_err(|m| input(ct2_model, m))?;
    let hp = hparams(&vars).map_err(|m| input(ct2_model, m))?;
    let ts = tensors(&vars, &hp).map_err(|m| input(ct2_model, m))?;
    drop(vars);
    drop(buf);
    let (mel_shape, mel) = read_npz_f32(mel_filters, &format!("mel_{}", hp.n_mels))
        .map_err(|m| input(mel_filters, m))?;
    if mel_shape.len() != 2 || mel_shape[0] != hp.n_mels {
        return Err(input(
            mel_filters,
            format!("mel filters shaped {mel_shape:?}"),
        ));
    }
    let vocab = read_tiktoken(tiktoken).map_err(|m| input(tiktoken, m))?;
    if vocab.len() > hp.n_vocab {
        return Err(input(
            tiktoken,
            format!("{} tokens for a model of {}", vocab.len(), hp.n_vocab),
        ));
    }

    let tmp = out.with_extension("bin.partial");
    let output = |source| ConvertError::Output {
        path: out.display().to_string(),
        source,
    };
    let mut w = BufWriter::new(File::create(&tmp).map_err(output)?);
    let mut write = || -> std::io::Result<()> {
        let i32s = |w: &mut BufWriter<File>, xs: &[usize]| -> std::io::Result<()> {
            for &x in xs {
                w.write_all(&(x as i32).to_le_bytes())?;
            }
            Ok(())
        };
        w.write_all(&GGML_MAGIC.to_le_bytes())?;
        i32s(
            &mut w,
            &[
                hp.n_vocab,
                hp.n_audio_ctx,
                hp.n_audio_state,
                hp.n_audio_head,
                hp.n_audio_layer,
                hp.n_text_ctx,
                hp.n_text_state,
                hp.n_text_head,
                hp.n_text_layer,
                hp.n_mels,
                1, // ftype: f16 weights
            ],
        )?;
        i32s(&mut w, &mel_shape)?;
        for v in &mel {
            w.write_all(&v.to_le_bytes())?;
        }
        i32s(&mut w, &[vocab.len()])?;
        for t in &vocab {
            i32s(&mut w, &[t.len()])?;
            w.write_all(t)?;
        }
        for t in &ts {
            // ggml lists dimensions innermost first.
            i32s(&mut w, &[t.shape.len(), t.name.len(), t.f16 as usize])?;
            let ne: Vec<usize> = t.shape.iter().rev().copied().collect();
            i32s(&mut w, &ne)?;
            w.write_all(t.name.as_bytes())?;
            if t.f16 {
                for v in &t.values {
                    w.write_all(&f16::from_f32(*v).to_le_bytes())?;
                }
            } else {
                for v in &t.values {
                    w.write_all(&v.to_le_bytes())?;
                }
            }
        }
        w.flush()?;
        w.get_ref().sync_all()
    };
    write().map_err(output)?;
    std::fs::rename(&tmp, out).map_err(output)?;
    Ok(Converted {
        hparams: hp,
        tensors: ts.len(),
        vocab: vocab.len(),
    })
}

/// The tensors a converted file holds, read back from its header: (name, ggml dims, is_f16).
/// Used by the tests and by `kefu models convert` to report what it wrote.
/// Each tensor of a ggml file: (name, ggml dims, is_f16).
pub type TensorIndex = Vec<(String, Vec<usize>, bool)>;

pub fn read_ggml_index(path: &Path) -> Result<(Hparams, TensorIndex), String> {
    let buf = std::fs::read(path).map_err(|e| e.to_string())?;
    let mut r = Reader { buf: &buf, at: 0 };
    if r.u32()? != GGML_MAGIC {
        return Err("not a ggml file".into());
    }
    let mut h = [0usize; 11];
    for x in &mut h {
        *x = r.u32()? as usize;
    }
    let hp = Hparams {
        n_vocab: h[0],
        n_audio_ctx: h[1],
        n_audio_state: h[2],
        n_audio_head: h[3],
        n_audio_layer: h[4],
        n_text_ctx: h[5],
        n_text_state: h[6],
        n_text_head: h[7],
        n_text_layer: h[8],
        n_mels: h[9],
    };
    let (m, f) = (r.u32()? as usize, r.u32()? as usize);
    r.take(m * f * 4)?;
    let nv = r.u32()? as usize;
    for _ in 0..nv {
        let n = r.u32()? as usize;
        r.take(n)?;
    }
    let mut out = Vec::new();
    while r.at < buf.len() {
        let (nd, len, ft) = (r.u32()? as usize, r.u32()? as usize, r.u32()?);
        let ne = (0..nd)
            .map(|_| r.u32().map(|d| d as usize))
            .collect::<Result<Vec<_>, _>>()?;
        let name = String::from_utf8_lossy(r.take(len)?).into_owned();
        let n: usize = ne.iter().product();
        r.take(n * if ft == 1 { 2 } else { 4 })?;
        out.push((name, ne, ft == 1));
    }
    Ok((hp, out))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tiny synthetic CTranslate2 Whisper (2 layers each side, width 8) exercises every name
    /// mapping and split without the real 145 MB file; the real files are tested end to end in
    /// tests/voice.rs.
    fn write_ct2(path: &Path, d: usize, layers: usize, vocab: usize) {
        let mut vars: Vec<(String, Vec<usize>, u8, Vec<u8>)> = Vec::new();
        let mut counter = 0u32;
        let mut f = |name: &str, dims: Vec<usize>| {
            let n: usize = dims.iter().product();
            let data: Vec<u8> = (0..n)
                .flat_map(|i| {
                    counter += 1;
                    f16::from_f32((i as f32) * 0.001 + counter as f32 * 1e-6).to_le_bytes()
                })
                .collect();
            vars.push((name.to_string(), dims, CT2_F16, data));
        };
        f("encoder/conv1/weight", vec![d, 4, 3]);
        f("encoder/conv1/bias", vec![d]);
        f("encoder/conv2/weight", vec![d, d, 3]);
        f("encoder/conv2/bias", vec![d]);
        f("encoder/position_encodings/encodings", vec![6, d]);
        f("encoder/layer_norm/gamma", vec![d]);
        f("encoder/layer_norm/beta", vec![d]);
        f("decoder/embeddings/weight", vec![vocab, d]);
        f("decoder/position_encodings/encodings", vec![5, d]);
        f("decoder/layer_norm/gamma", vec![d]);
        f("decoder/layer_norm/beta", vec![d]);
        for side in ["encoder", "decoder"] {
            for i in 0..layers {
                let c = format!("{side}/layer_{i}");
                for ln in [
                    "self_attention/layer_norm",
                    "ffn/layer_norm",
                    "attention/layer_norm",
                ] {
                    if ln.starts_with("attention") && side == "encoder" {
                        continue;
                    }
                    f(&format!("{c}/{ln}/gamma"), vec![d]);
                    f(&format!("{c}/{ln}/beta"), vec![d]);
                }
                f(
                    &format!("{c}/self_attention/linear_0/weight"),
                    vec![3 * d, d],
                );
                f(&format!("{c}/self_attention/linear_0/bias"), vec![3 * d]);
                f(&format!("{c}/self_attention/linear_1/weight"), vec![d, d]);
                f(&format!("{c}/self_attention/linear_1/bias"), vec![d]);
                f(&format!("{c}/ffn/linear_0/weight"), vec![4 * d, d]);
                f(&format!("{c}/ffn/linear_0/bias"), vec![4 * d]);
                f(&format!("{c}/ffn/linear_1/weight"), vec![d, 4 * d]);
                f(&format!("{c}/ffn/linear_1/bias"), vec![d]);
                if side == "decoder" {
                    f(&format!("{c}/attention/linear_0/weight"), vec![d, d]);
                    f(&format!("{c}/attention/linear_0/bias"), vec![d]);
                    f(&format!("{c}/attention/linear_1/weight"), vec![2 * d, d]);
                    f(&format!("{c}/attention/linear_1/bias"), vec![2 * d]);
                    f(&format!("{c}/attention/linear_2/weight"), vec![d, d]);
                    f(&format!("{c}/attention/linear_2/bias"), vec![d]);
                }
            }
        }
        vars.push((
            "encoder/num_heads".into(),
            vec![],
            CT2_I16,
            2i16.to_le_bytes().to_vec(),
        ));
        vars.push((
            "decoder/num_heads".into(),
            vec![],
            CT2_I16,
            2i16.to_le_bytes().to_vec(),
        ));
        let mut out = Vec::new();
        let s = |out: &mut Vec<u8>, s: &str| {
            out.extend(((s.len() + 1) as u16).to_le_bytes());
            out.extend(s.as_bytes());
            out.push(0);
        };
        out.extend(6u32.to_le_bytes());
        s(&mut out, "WhisperSpec");
        out.extend(3u32.to_le_bytes());
        out.extend((vars.len() as u32).to_le_bytes());
        for (name, dims, dt, data) in &vars {
            s(&mut out, name);
            out.push(dims.len() as u8);
            for x in dims {
                out.extend((*x as u32).to_le_bytes());
            }
            out.push(*dt);
            out.extend((data.len() as u32).to_le_bytes());
            out.extend(data);
        }
        out.extend(0u32.to_le_bytes());
        std::fs::write(path, out).unwrap();
    }

    fn write_npz(path: &Path, n_mels: usize, n_fft: usize) {
        let mut npy = Vec::new();
        let header =
            format!("{{'descr': '<f4', 'fortran_order': False, 'shape': ({n_mels}, {n_fft}), }}");
        let pad = 64 - (10 + header.len() + 1) % 64;
        let header = format!("{header}{}\n", " ".repeat(pad));
        npy.extend(b"\x93NUMPY\x01\x00");
        npy.extend((header.len() as u16).to_le_bytes());
        npy.extend(header.as_bytes());
        for i in 0..n_mels * n_fft {
            npy.extend((i as f32).to_le_bytes());
        }
        let mut zip = zip::ZipWriter::new(File::create(path).unwrap());
        zip.start_file(
            format!("mel_{n_mels}.npy"),
            zip::write::SimpleFileOptions::default(),
        )
        .unwrap();
        zip.write_all(&npy).unwrap();
        zip.finish().unwrap();
    }

    #[test]
    fn converts_names_shapes_and_types_as_whisper_cpp_expects() {
        let dir = tempfile::tempdir().unwrap();
        let (ct2, npz, tik, out) = (
            dir.path().join("model.bin"),
            dir.path().join("mel.npz"),
            dir.path().join("v.tiktoken"),
            dir.path().join("ggml.bin"),
        );
        write_ct2(&ct2, 8, 2, 12);
        write_npz(&npz, 4, 5);
        std::fs::write(&tik, "IQ== 0\nIg== 1\n= 2\n").unwrap();
        let c = convert(&ct2, &npz, &tik, &out).unwrap();
        assert_eq!(
            c.hparams,
            Hparams {
                n_vocab: 12,
                n_audio_ctx: 6,
                n_audio_state: 8,
                n_audio_head: 2,
                n_audio_layer: 2,
                n_text_ctx: 5,
                n_text_state: 8,
                n_text_head: 2,
                n_text_layer: 2,
                n_mels: 4,
            }
        );
        assert_eq!(c.vocab, 3);
        let (hp, index) = read_ggml_index(&out).unwrap();
        assert_eq!(hp, c.hparams);
        // 7 encoder and 4 decoder tensors, 15 per encoder layer and 24 per decoder layer:
        // whisper.cpp's tensor list, which refuses a file with any missing.
        assert_eq!(index.len(), 11 + 2 * 15 + 2 * 24, "{index:?}");
        let get = |n: &str| {
            index
                .iter()
                .find(|t| t.0 == n)
                .unwrap_or_else(|| panic!("no {n}"))
        };
        assert_eq!(get("encoder.conv1.weight").1, vec![3, 4, 8]);
        assert!(get("encoder.conv1.weight").2);
        assert_eq!(get("encoder.conv1.bias").1, vec![1, 8]);
        assert!(!get("encoder.conv1.bias").2);
        assert_eq!(get("encoder.positional_embedding").1, vec![8, 6]);
        assert!(!get("encoder.positional_embedding").2);
        assert_eq!(get("decoder.token_embedding.weight").1, vec![8, 12]);
        assert_eq!(get("encoder.blocks.1.attn.key.weight").1, vec![8, 8]);
        assert!(index.iter().all(|t| !t.0.ends_with("attn.key.bias")));
        assert_eq!(get("decoder.blocks.0.cross_attn.value.bias").1, vec![8]);
        assert_eq!(get("decoder.blocks.1.mlp.0.weight").1, vec![8, 32]);
        assert!(!get("decoder.ln.bias").2);
        // No name appears twice.
        let mut names: Vec<_> = index.iter().map(|t| &t.0).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), index.len());
    }

    #[test]
    fn split_takes_the_right_rows() {
        let d = 8;
        let dir = tempfile::tempdir().unwrap();
        let ct2 = dir.path().join("model.bin");
        write_ct2(&ct2, d, 1, 10);
        let buf = std::fs::read(&ct2).unwrap();
        let vars = read_ct2(&buf).unwrap();
        let hp = hparams(&vars).unwrap();
        let ts = tensors(&vars, &hp).unwrap();
        let fused = vars["decoder/layer_0/self_attention/linear_0/weight"]
            .values()
            .unwrap();
        let v = ts
            .iter()
            .find(|t| t.name == "decoder.blocks.0.attn.value.weight")
            .unwrap();
        assert_eq!(v.values, fused[2 * d * d..3 * d * d]);
        let kv = vars["decoder/layer_0/attention/linear_1/bias"]
            .values()
            .unwrap();
        let vb = ts
            .iter()
            .find(|t| t.name == "decoder.blocks.0.cross_attn.value.bias")
            .unwrap();
        assert_eq!(vb.values, kv[d..]);
    }

    #[test]
    fn refuses_what_is_not_a_whisper_model() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.bin");
        std::fs::write(&p, b"GGUF\x03\x00\x00\x00garbage").unwrap();
        let e = convert(&p, &p, &p, &dir.path().join("o"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("not a CTranslate2 model"), "{e}");
        let mut truncated = 6u32.to_le_bytes().to_vec();
        truncated.extend(12u16.to_le_bytes());
        truncated.extend(b"WhisperSpec\0");
        truncated.extend(3u32.to_le_bytes());
        truncated.extend(5u32.to_le_bytes());
        std::fs::write(&p, truncated).unwrap();
        let e = convert(&p, &p, &p, &dir.path().join("o"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("truncated"), "{e}");
    }
}
