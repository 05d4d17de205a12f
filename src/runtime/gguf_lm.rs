//! A decoder-only transformer read from GGUF (the llama and qwen2 architectures), whose KV cache
//! lives outside the weights.
//!
//! Why not candle-transformers' `quantized_llama` / `quantized_qwen2` as they are: both keep the
//! KV cache inside the model, and `quantized_qwen2::ModelWeights` cannot even be cloned, so one
//! loaded model can serve one conversation at a time. Here the weights are loaded once and shared,
//! and each sequence owns a [`KvCache`]; the scheduler in `generate.rs` interleaves sequences over
//! the same weights. The layer maths follow candle's implementations (same kernels: `QMatMul`,
//! `RmsNorm`, `rope`/`rope_i`, `softmax_last_dim`).

use candle_core::quantized::{GgmlDType, QMatMul, QTensor, gguf_file};
use candle_core::{DType, Device, Module, Result, Tensor};
use candle_transformers::quantized_nn::RmsNorm;
use candle_transformers::utils::repeat_kv;

use super::qkernel::CpuMatrix;

/// A weight matrix: candle's kernels, or this crate's Q5_0/Q4_1 kernels on the CPU.
enum Linear {
    Candle(QMatMul),
    Own(CpuMatrix),
}

impl Linear {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        match self {
            Linear::Candle(m) => m.forward(x),
            Linear::Own(m) => m.forward(x),
        }
    }
}

/// The token embeddings: Q5_0 and Q4_1 rows stay compact (Qwen2.5's table is 151,936 x 896,
/// 544 MB as f32 and 94 MB as stored) and are expanded on lookup; others are expanded at load.
enum Embedding {
    Dense(candle_nn::Embedding),
    Own(CpuMatrix, usize),
}

impl Embedding {
    fn forward(&self, tokens: &[u32], device: &Device) -> Result<Tensor> {
        match self {
            Embedding::Dense(e) => e.forward(&Tensor::new(tokens, device)?.unsqueeze(0)?),
            Embedding::Own(m, width) => {
                let mut v = vec![0f32; tokens.len() * width];
                for (t, row) in tokens.iter().zip(v.chunks_exact_mut(*width)) {
                    let t = *t as usize;
                    if t >= m.rows() {
                        candle_core::bail!("token {t} outside the {}-token vocabulary", m.rows());
                    }
                    m.dequantize_row(t, row);
                }
                Tensor::from_vec(v, (1, tokens.len(), *width), device)
            }
        }
    }
}

struct Mlp {
    gate: Linear,
    down: Linear,
    up: Linear,
}

struct Layer {
    wq: Linear,
    wk: Linear,
    wv: Linear,
    /// qwen2 has biases on q, k and v; llama has none.
    bias: Option<(Tensor, Tensor, Tensor)>,
    wo: Linear,
    attn_norm: RmsNorm,
    mlp: Mlp,
    ffn_norm: RmsNorm,
}

pub struct GgufLm {
    embeddings: Embedding,
    layers: Vec<Layer>,
    norm: RmsNorm,
    output: Linear,
    n_head: usize,
    n_kv_head: usize,
    head_dim: usize,
    /// NEOX (pairs i, i+d/2: qwen2) or interleaved (pairs 2i, 2i+1: llama) rotary embedding,
    /// as llama.cpp's `llama_model_rope_type` decides it.
    rope_neox: bool,
    cos: Tensor,
    sin: Tensor,
    neg_inf: Tensor,
    device: Device,
}

/// One sequence's attention keys and values, layer by layer, each `(1, kv heads, tokens,
/// head dim)`. A clone shares the tensors (they are never written in place: reading more
/// tokens makes new ones), which is what lets the prefix cache keep a prompt's.
#[derive(Clone)]
pub struct KvCache {
    layers: Vec<Option<(Tensor, Tensor)>>,
}

/// The next tokens of one sequence in a [`GgufLm::forward_parts`] pass.
pub struct Part<'a> {
    pub tokens: &'a [u32],
    pub cache: &'a mut KvCache,
    /// Whether the logits after its last token are wanted.
    pub logits: bool,
}

impl KvCache {
    /// Tokens held.
    pub fn len(&self) -> usize {
        self.layers
            .first()
            .and_then(|l| l.as_ref())
            .map(|(k, _)| k.dim(2).unwrap_or(0))
            .unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Memory the keys and values take.
    pub fn bytes(&self) -> usize {
        self.layers
            .iter()
            .flatten()
            .map(|(k, v)| (k.elem_count() + v.elem_count()) * k.dtype().size_in_bytes())
            .sum()
    }

    /// A cache whose keys and values are the token ids themselves, one number per token and
    /// layer: what the prefix cache's tests can check a prefix against.
    #[cfg(test)]
    pub(super) fn of_tokens(tokens: &[u32], layers: usize) -> KvCache {
        let t: Vec<f32> = tokens.iter().map(|&t| t as f32).collect();
        let t = Tensor::from_vec(t, (1, 1, tokens.len(), 1), &Device::Cpu).expect("a tensor");
        KvCache {
            layers: (0..layers).map(|_| Some((t.clone(), t.clone()))).collect(),
        }
    }

    /// The first layer's keys, flattened (see [`KvCache::of_tokens`]).
    #[cfg(test)]
    pub(super) fn key_values(&self) -> Vec<f32> {
        match self.layers.first() {
            Some(Some((k, _))) => k.flatten_all().and_then(|k| k.to_vec1()).expect("f32 keys"),
            _ => Vec::new(),
        }
    }

    /// The cache of the first `len` tokens, in tensors of its own (so that it does not keep a
    /// longer cache's memory alive).
    pub fn prefix(&self, len: usize) -> Result<KvCache> {
        let cut = |t: &Tensor| t.narrow(2, 0, len)?.contiguous();
        let layers = self
            .layers
            .iter()
            .map(|l| match l {
                Some((k, v)) => Ok(Some((cut(k)?, cut(v)?))),
                None => Ok(None),
            })
            .collect::<Result<_>>()?;
        Ok(KvCache { layers })
    }
}

impl GgufLm {
    /// Reads the weights. `context` bounds the rotary tables (and so the longest sequence).
    pub fn from_gguf<R: std::io::Seek + std::io::Read>(
        ct: &gguf_file::Content,
        reader: &mut R,
        device: &Device,
        context: usize,
    ) -> Result<Self> {
        let arch = ct
            .metadata
            .get("general.architecture")
            .and_then(|v| v.to_string().ok())
            .cloned()
            .unwrap_or_default();
        if arch != "llama" && arch != "qwen2" {
            candle_core::bail!("architecture {arch:?} is not supported (llama and qwen2 are)");
        }
        let md = |key: &str| {
            ct.metadata.get(&format!("{arch}.{key}")).ok_or_else(|| {
                candle_core::Error::Msg(format!("GGUF metadata {arch}.{key} missing"))
            })
        };
        let n_head = md("attention.head_count")?.to_u32()? as usize;
        let n_kv_head = md("attention.head_count_kv")?.to_u32()? as usize;
        let n_embd = md("embedding_length")?.to_u32()? as usize;
        let n_layer = md("block_count")?.to_u32()? as usize;
        let eps = md("attention.layer_norm_rms_epsilon")?.to_f32()? as f64;
        let freq_base = md("rope.freq_base")
            .and_then(|v| v.to_f32())
            .unwrap_or(10000.0);
        let head_dim = n_embd / n_head;

        let mut get = |name: String| ct.tensor(reader, &name, device);

        let tok = get("token_embd.weight".into())?;
        let embeddings = match device.is_cpu().then(|| CpuMatrix::from_qtensor(&tok)) {
            Some(Ok(Some(m))) => Embedding::Own(m, n_embd),
            Some(Err(e)) => return Err(e),
            _ => Embedding::Dense(candle_nn::Embedding::new(tok.dequantize(device)?, n_embd)),
        };
        let norm = RmsNorm::from_qtensor(get("output_norm.weight".into())?, eps)?;
        let output = match get("output.weight".into()) {
            Ok(w) => weight(w, device)?,
            // Tied embeddings: the output projection is the embedding matrix.
            Err(_) => weight(get("token_embd.weight".into())?, device)?,
        };
        let mut layers = Vec::with_capacity(n_layer);
        for i in 0..n_layer {
            let p = format!("blk.{i}");
            let bias = if arch == "qwen2" {
                Some((
                    get(format!("{p}.attn_q.bias"))?.dequantize(device)?,
                    get(format!("{p}.attn_k.bias"))?.dequantize(device)?,
                    get(format!("{p}.attn_v.bias"))?.dequantize(device)?,
                ))
            } else {
                None
            };
            layers.push(Layer {
                wq: weight(get(format!("{p}.attn_q.weight"))?, device)?,
                wk: weight(get(format!("{p}.attn_k.weight"))?, device)?,
                wv: weight(get(format!("{p}.attn_v.weight"))?, device)?,
                bias,
                wo: weight(get(format!("{p}.attn_output.weight"))?, device)?,
                attn_norm: RmsNorm::from_qtensor(get(format!("{p}.attn_norm.weight"))?, eps)?,
                mlp: Mlp {
                    gate: weight(get(format!("{p}.ffn_gate.weight"))?, device)?,
                    down: weight(get(format!("{p}.ffn_down.weight"))?, device)?,
                    up: weight(get(format!("{p}.ffn_up.weight"))?, device)?,
                },
                ffn_norm: RmsNorm::from_qtensor(get(format!("{p}.ffn_norm.weight"))?, eps)?,
            });
        }
        let (cos, sin) = rotary_tables(head_dim, freq_base, context, device)?;
        Ok(GgufLm {
            embeddings,
            layers,
            norm,
            output,
            n_head,
            n_kv_head,
            head_dim,
            rope_neox: arch == "qwen2",
            cos,
            sin,
            neg_inf: Tensor::new(f32::NEG_INFINITY, device)?,
            device: device.clone(),
        })
    }

    pub fn new_cache(&self) -> KvCache {
        KvCache {
            layers: (0..self.layers.len()).map(|_| None).collect(),
        }
    }

    /// Longest sequence the rotary tables cover.
    pub fn max_positions(&self) -> usize {
        self.cos.dim(0).unwrap_or(0)
    }

    /// One forward pass over the next tokens of several sequences: `parts[i].tokens` follow
    /// the `parts[i].cache.len()` tokens already read into that sequence's cache (a chunk of
    /// its prompt, or the one token it last produced). Returns, for each part that asks for
    /// them in order, the logits after its last token: `(parts asking, vocab)`.
    ///
    /// Why one pass: the weights are read once for every row of every sequence, so a decode
    /// step for eight sequences costs little more than for one, and prompt chunks of several
    /// sequences are read together with the others' decode tokens (continuous batching, as
    /// vLLM's chunked prefill does it). Only attention, whose keys and values are each
    /// sequence's own, runs part by part; the output projection (the vocabulary, the widest
    /// matrix) runs only for the rows whose logits are wanted.
    pub fn forward_parts(&self, parts: &mut [Part<'_>]) -> Result<Option<Tensor>> {
        struct Span {
            offset: usize,
            len: usize,
            pos: usize,
            mask: Option<Tensor>,
        }
        let mut tokens = Vec::new();
        let mut spans = Vec::with_capacity(parts.len());
        for p in parts.iter() {
            let (pos, len) = (p.cache.len(), p.tokens.len());
            if len == 0 {
                candle_core::bail!("a part with no tokens");
            }
            self.check_room(pos + len)?;
            let mask = if len > 1 {
                Some(candle_transformers::utils::build_causal_mask(
                    len,
                    pos,
                    &self.device,
                )?)
            } else {
                None
            };
            spans.push(Span {
                offset: tokens.len(),
                len,
                pos,
                mask,
            });
            tokens.extend_from_slice(p.tokens);
        }
        // (1, every part's tokens, hidden)
        let mut h = self.embeddings.forward(&tokens, &self.device)?;
        for (li, layer) in self.layers.iter().enumerate() {
            let (q, k, v) = self.project(layer, &layer.attn_norm.forward(&h)?)?;
            let mut ys = Vec::with_capacity(parts.len());
            for (p, s) in parts.iter_mut().zip(&spans) {
                let cut = |t: &Tensor| t.narrow(1, s.offset, s.len);
                ys.push(self.attend(
                    cut(&q)?,
                    cut(&k)?,
                    cut(&v)?,
                    &mut p.cache.layers[li],
                    s.mask.as_ref(),
                    &self.cos.narrow(0, s.pos, s.len)?,
                    &self.sin.narrow(0, s.pos, s.len)?,
                )?);
            }
            let y = if ys.len() == 1 {
                ys.pop().expect("one part")
            } else {
                Tensor::cat(&ys, 1)?
            };
            h = (layer.wo.forward(&y)? + &h)?;
            h = (self.mlp(layer, &h)? + &h)?;
        }
        let last: Vec<u32> = parts
            .iter()
            .zip(&spans)
            .filter(|(p, _)| p.logits)
            .map(|(_, s)| (s.offset + s.len - 1) as u32)
            .collect();
        if last.is_empty() {
            return Ok(None);
        }
        let h = h.index_select(&Tensor::new(last.as_slice(), &self.device)?, 1)?;
        let h = self.norm.forward(&h)?;
        Ok(Some(self.output.forward(&h)?.squeeze(0)?))
    }

    fn check_room(&self, len: usize) -> Result<()> {
        if len > self.max_positions() {
            candle_core::bail!(
                "sequence of {len} tokens is longer than the {}-token context",
                self.max_positions()
            );
        }
        Ok(())
    }

    fn mlp(&self, layer: &Layer, h: &Tensor) -> Result<Tensor> {
        let m = &layer.mlp;
        let x = layer.ffn_norm.forward(h)?;
        m.down
            .forward(&(candle_nn::ops::silu(&m.gate.forward(&x)?)? * m.up.forward(&x)?)?)
    }

    /// The query, key and value projections of `x` (batch, tokens, hidden).
    fn project(&self, l: &Layer, x: &Tensor) -> Result<(Tensor, Tensor, Tensor)> {
        let (mut q, mut k, mut v) = (l.wq.forward(x)?, l.wk.forward(x)?, l.wv.forward(x)?);
        if let Some((bq, bk, bv)) = &l.bias {
            q = q.broadcast_add(bq)?;
            k = k.broadcast_add(bk)?;
            v = v.broadcast_add(bv)?;
        }
        Ok((q, k, v))
    }

    /// Attention of one sequence's new tokens over its cache (which it extends); returns the
    /// heads' output, (1, tokens, hidden), before the output projection.
    #[allow(clippy::too_many_arguments)]
    fn attend(
        &self,
        q: Tensor,
        k: Tensor,
        v: Tensor,
        kv: &mut Option<(Tensor, Tensor)>,
        mask: Option<&Tensor>,
        cos: &Tensor,
        sin: &Tensor,
    ) -> Result<Tensor> {
        let (b, t, n_embd) = q.dims3()?;
        let heads = |x: Tensor, n: usize| -> Result<Tensor> {
            x.reshape((b, t, n, self.head_dim))?
                .transpose(1, 2)?
                .contiguous()
        };
        let (q, k, v) = (
            heads(q, self.n_head)?,
            heads(k, self.n_kv_head)?,
            heads(v, self.n_kv_head)?,
        );
        let rope = |x: &Tensor| {
            if self.rope_neox {
                candle_nn::rotary_emb::rope(x, cos, sin)
            } else {
                candle_nn::rotary_emb::rope_i(x, cos, sin)
            }
        };
        let (q, k) = (rope(&q)?, rope(&k)?);
        let (k, v) = match kv.take() {
            None => (k, v),
            Some((pk, pv)) => (Tensor::cat(&[&pk, &k], 2)?, Tensor::cat(&[&pv, &v], 2)?),
        };
        *kv = Some((k.clone(), v.clone()));
        // Grouped-query attention by copying each key/value head once per query head that
        // uses it (candle's `repeat_kv`). Stacking a group's query heads as rows of one product
        // instead saves the copy but was 5-8% slower to decode at short contexts (small
        // products), and it sums in another order: a lone request's reply would change.
        let groups = self.n_head / self.n_kv_head;
        let k = repeat_kv(k, groups)?;
        let v = repeat_kv(v, groups)?;
        let att = (q.matmul(&k.t()?)? / (self.head_dim as f64).sqrt())?;
        let att = match mask {
            None => att,
            Some(m) => {
                let m = m.broadcast_as(att.shape())?;
                m.where_cond(&self.neg_inf.broadcast_as(att.shape().dims())?, &att)?
            }
        };
        let att = candle_nn::ops::softmax_last_dim(&att)?;
        let y = att.matmul(&v.contiguous()?)?;
        y.transpose(1, 2)?.reshape((b, t, n_embd))
    }
}

/// candle 0.11's x86 kernels have SIMD dot products for Q4_0, Q8_0 and the K-quants, but Q4_1,
/// Q5_0 and Q5_1 fall back to scalar loops (`k_quants.rs`: `vec_dot` calls `vec_dot_unopt`).
/// On the CPU, Q5_0 (most of Qwen2.5's Q4_K_M file) and Q4_1 (SmolLM2's file) run on this
/// crate's kernels (`qkernel.rs`), which read the blocks as stored. Q5_1, rare in practice, is
/// re-quantized to Q8_0 at load: every 5-bit value is exactly representable within Q8_0's
/// rounding, and candle's AVX2 Q8_0 kernel beats the scalar loop several times over. GPU
/// kernels cover every type.
fn weight(t: QTensor, device: &Device) -> Result<Linear> {
    if !device.is_cpu() {
        return Ok(Linear::Candle(QMatMul::from_qtensor(t)?));
    }
    if let Some(m) = CpuMatrix::from_qtensor(&t)? {
        return Ok(Linear::Own(m));
    }
    if t.dtype() == GgmlDType::Q5_1 {
        let f = t.dequantize(device)?;
        return Ok(Linear::Candle(QMatMul::from_qtensor(QTensor::quantize(
            &f,
            GgmlDType::Q8_0,
        )?)?));
    }
    Ok(Linear::Candle(QMatMul::from_qtensor(t)?))
}

fn rotary_tables(
    head_dim: usize,
    base: f32,
    context: usize,
    device: &Device,
) -> Result<(Tensor, Tensor)> {
    let theta: Vec<f32> = (0..head_dim)
        .step_by(2)
        .map(|i| 1f32 / base.powf(i as f32 / head_dim as f32))
        .collect();
    let n = theta.len();
    let theta = Tensor::new(theta.as_slice(), device)?;
    let idx = Tensor::arange(0, context as u32, device)?
        .to_dtype(DType::F32)?
        .reshape((context, 1))?
        .matmul(&theta.reshape((1, n))?)?;
    Ok((idx.cos()?, idx.sin()?))
}
