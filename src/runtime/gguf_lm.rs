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
use candle_core::{DType, Device, IndexOp, Module, Result, Tensor};
use candle_transformers::quantized_nn::RmsNorm;
use candle_transformers::utils::repeat_kv;

struct Mlp {
    gate: QMatMul,
    down: QMatMul,
    up: QMatMul,
}

struct Layer {
    wq: QMatMul,
    wk: QMatMul,
    wv: QMatMul,
    /// qwen2 has biases on q, k and v; llama has none.
    bias: Option<(Tensor, Tensor, Tensor)>,
    wo: QMatMul,
    attn_norm: RmsNorm,
    mlp: Mlp,
    ffn_norm: RmsNorm,
}

pub struct GgufLm {
    embeddings: candle_nn::Embedding,
    layers: Vec<Layer>,
    norm: RmsNorm,
    output: QMatMul,
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

/// One sequence's attention keys and values, layer by layer.
pub struct KvCache {
    layers: Vec<Option<(Tensor, Tensor)>>,
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
        let embeddings = candle_nn::Embedding::new(tok.dequantize(device)?, n_embd);
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

    /// Runs `tokens` (the sequence's next tokens, after the `cache.len()` already read) and
    /// returns the logits for the last one.
    pub fn forward(&self, tokens: &[u32], cache: &mut KvCache) -> Result<Tensor> {
        let pos = cache.len();
        let seq_len = tokens.len();
        if pos + seq_len > self.max_positions() {
            candle_core::bail!(
                "sequence of {} tokens is longer than the {}-token context",
                pos + seq_len,
                self.max_positions()
            );
        }
        let x = Tensor::new(tokens, &self.device)?.unsqueeze(0)?;
        let mask = if seq_len > 1 {
            Some(candle_transformers::utils::build_causal_mask(
                seq_len,
                pos,
                &self.device,
            )?)
        } else {
            None
        };
        let cos = self.cos.narrow(0, pos, seq_len)?;
        let sin = self.sin.narrow(0, pos, seq_len)?;
        let mut h = self.embeddings.forward(&x)?;
        for (layer, kv) in self.layers.iter().zip(cache.layers.iter_mut()) {
            let a = self.attention(
                layer,
                &layer.attn_norm.forward(&h)?,
                kv,
                mask.as_ref(),
                &cos,
                &sin,
            )?;
            h = (a + &h)?;
            let m = &layer.mlp;
            let x = layer.ffn_norm.forward(&h)?;
            let f = m
                .down
                .forward(&(candle_nn::ops::silu(&m.gate.forward(&x)?)? * m.up.forward(&x)?)?)?;
            h = (f + &h)?;
        }
        let h = self.norm.forward(&h)?;
        self.output.forward(&h.i((.., seq_len - 1, ..))?)
    }

    fn attention(
        &self,
        l: &Layer,
        x: &Tensor,
        kv: &mut Option<(Tensor, Tensor)>,
        mask: Option<&Tensor>,
        cos: &Tensor,
        sin: &Tensor,
    ) -> Result<Tensor> {
        let (b, t, n_embd) = x.dims3()?;
        let (mut q, mut k, mut v) = (l.wq.forward(x)?, l.wk.forward(x)?, l.wv.forward(x)?);
        if let Some((bq, bk, bv)) = &l.bias {
            q = q.broadcast_add(bq)?;
            k = k.broadcast_add(bk)?;
            v = v.broadcast_add(bv)?;
        }
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
        let y = y.transpose(1, 2)?.reshape((b, t, n_embd))?;
        l.wo.forward(&y)
    }
}

/// candle 0.11's x86 kernels have SIMD dot products for Q4_0, Q8_0 and the K-quants, but Q4_1,
/// Q5_0 and Q5_1 fall back to scalar loops (`k_quants.rs`: `vec_dot` calls `vec_dot_unopt`).
/// Qwen2.5's Q4_K_M file is mostly Q5_0 and SmolLM2's is Q4_1, so on CPU those matrices are
/// re-quantized to Q8_0 at load: every 5-bit (or 4-bit) value is exactly representable within
/// Q8_0's rounding of 1/254 of the block's range, and the AVX2 Q8_0 kernel is several times
/// faster than the scalar loop even though it reads more bytes. GPU kernels cover every type.
fn weight(t: QTensor, device: &Device) -> Result<QMatMul> {
    let slow = matches!(
        t.dtype(),
        GgmlDType::Q4_1 | GgmlDType::Q5_0 | GgmlDType::Q5_1
    );
    if slow && device.is_cpu() {
        let f = t.dequantize(device)?;
        return QMatMul::from_qtensor(QTensor::quantize(&f, GgmlDType::Q8_0)?);
    }
    QMatMul::from_qtensor(t)
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
