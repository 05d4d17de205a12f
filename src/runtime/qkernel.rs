//! CPU matrix products for Q5_0, Q4_1 and Q8_0 weights, read as stored.
//!
//! Why this exists: Qwen2.5's Q4_K_M file stores every matrix whose rows are 896 wide (q, k, v,
//! o, gate, up) as Q5_0, because 896 is not a multiple of the K-quants' 256-value superblock,
//! and SmolLM2's file is Q4_1 throughout. candle 0.11 has only scalar dot products for both, and
//! its repacked AVX-512 tiles need k % 256 == 0. Re-quantizing to Q8_0 made the arithmetic fast,
//! but a decode step is bound by memory bandwidth and Q8_0 reads 34 bytes per 32 weights where
//! Q5_0 reads 22 and Q4_1 20: for Qwen, 487 MB per token against llama.cpp's 392 MB. These
//! kernels keep the stored blocks and do llama.cpp's arithmetic on 8-bit activations: the
//! weights unpacked to bytes in registers, 4-way byte dot products (`vpmaddubsw`, or VNNI's
//! `vpdpbusd` where the CPU has it). Several activation rows share each unpacked weight block,
//! and each weight row is read from memory once per call, however many rows (prompt tokens, or
//! sequences decoded together) there are. Q8_0 matrices whose rows are not whole superblocks
//! (Qwen2.5's 151,936-row output projection) run here too: candle's Q8_0 path for several
//! rows is a row-by-row dot product, and it made batched decoding a third slower.

use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{Device, Result, Tensor};
use half::f16;

const QK: usize = 32;

/// ggml's `block_q5_0`: 32 weights `(low nibble | high bit << 4) - 16`, times `d`.
#[repr(C)]
#[derive(Clone, Copy)]
struct BlockQ5_0 {
    d: f16,
    /// Bit j is the fifth bit of weight j.
    qh: [u8; 4],
    /// Low nibble of byte j is weight j, high nibble weight j + 16.
    qs: [u8; QK / 2],
}

/// ggml's `block_q4_1`: 32 weights `nibble * d + m`.
#[repr(C)]
#[derive(Clone, Copy)]
struct BlockQ4_1 {
    d: f16,
    m: f16,
    /// Low nibble of byte j is weight j, high nibble weight j + 16.
    qs: [u8; QK / 2],
}

/// ggml's `block_q8_0`: 32 signed weights times `d`.
#[repr(C)]
#[derive(Clone, Copy)]
struct BlockQ8_0 {
    d: f16,
    qs: [i8; QK],
}

/// One block of a quantized activation row: 32 values `qs * d`, and `s = d * Σ qs` for the
/// offset term of Q4_1.
#[repr(C)]
#[derive(Clone, Copy)]
struct BlockQ8 {
    d: f32,
    s: f32,
    qs: [i8; QK],
}

/// Dots one weight row with `t` (1..=TILE) consecutive activation rows into `out[..t]`.
type Kernel<B> = fn(&[B], &[BlockQ8], usize, &mut [f32; TILE]);

/// Activation rows per kernel call: each unpacked weight block is used this many times.
const TILE: usize = 8;

trait WeightBlock: Copy + Send + Sync + 'static {
    const DTYPE: GgmlDType;
    const BYTES: usize;
    fn parse(b: &[u8]) -> Self;
    /// The 32 weights, in order.
    fn values(&self) -> [f32; QK];
    /// The best kernel this CPU runs, and its name.
    fn kernel() -> (Kernel<Self>, &'static str);
}

fn nibble_pairs(qs: &[u8; QK / 2], high_bits: u32) -> [u8; QK] {
    let mut v = [0u8; QK];
    for j in 0..QK / 2 {
        v[j] = (qs[j] & 0x0f) | (((high_bits >> j) & 1) << 4) as u8;
        v[j + QK / 2] = (qs[j] >> 4) | (((high_bits >> (j + 16)) & 1) << 4) as u8;
    }
    v
}

impl WeightBlock for BlockQ5_0 {
    const DTYPE: GgmlDType = GgmlDType::Q5_0;
    const BYTES: usize = 22;
    fn parse(b: &[u8]) -> Self {
        BlockQ5_0 {
            d: f16::from_le_bytes([b[0], b[1]]),
            qh: [b[2], b[3], b[4], b[5]],
            qs: b[6..22].try_into().expect("16 bytes"),
        }
    }
    fn values(&self) -> [f32; QK] {
        let d = self.d.to_f32();
        nibble_pairs(&self.qs, u32::from_le_bytes(self.qh)).map(|q| (q as i32 - 16) as f32 * d)
    }
    fn kernel() -> (Kernel<Self>, &'static str) {
        match x86_level() {
            #[cfg(target_arch = "x86_64")]
            Level::Vnni => (x86::q5_0_vnni, "avx512vnni"),
            #[cfg(target_arch = "x86_64")]
            Level::Avx2 => (x86::q5_0_avx2, "avx2"),
            Level::Scalar => (dot_scalar::<BlockQ5_0>, "scalar"),
        }
    }
}

impl WeightBlock for BlockQ4_1 {
    const DTYPE: GgmlDType = GgmlDType::Q4_1;
    const BYTES: usize = 20;
    fn parse(b: &[u8]) -> Self {
        BlockQ4_1 {
            d: f16::from_le_bytes([b[0], b[1]]),
            m: f16::from_le_bytes([b[2], b[3]]),
            qs: b[4..20].try_into().expect("16 bytes"),
        }
    }
    fn values(&self) -> [f32; QK] {
        let (d, m) = (self.d.to_f32(), self.m.to_f32());
        nibble_pairs(&self.qs, 0).map(|q| q as f32 * d + m)
    }
    fn kernel() -> (Kernel<Self>, &'static str) {
        match x86_level() {
            #[cfg(target_arch = "x86_64")]
            Level::Vnni => (x86::q4_1_vnni, "avx512vnni"),
            #[cfg(target_arch = "x86_64")]
            Level::Avx2 => (x86::q4_1_avx2, "avx2"),
            Level::Scalar => (dot_scalar::<BlockQ4_1>, "scalar"),
        }
    }
}

impl WeightBlock for BlockQ8_0 {
    const DTYPE: GgmlDType = GgmlDType::Q8_0;
    const BYTES: usize = 34;
    fn parse(b: &[u8]) -> Self {
        let mut qs = [0i8; QK];
        for (q, v) in qs.iter_mut().zip(&b[2..34]) {
            *q = *v as i8;
        }
        BlockQ8_0 {
            d: f16::from_le_bytes([b[0], b[1]]),
            qs,
        }
    }
    fn values(&self) -> [f32; QK] {
        let d = self.d.to_f32();
        self.qs.map(|q| q as f32 * d)
    }
    fn kernel() -> (Kernel<Self>, &'static str) {
        match x86_level() {
            #[cfg(target_arch = "x86_64")]
            Level::Vnni => (x86::q8_0_vnni, "avx512vnni"),
            #[cfg(target_arch = "x86_64")]
            Level::Avx2 => (x86::q8_0_avx2, "avx2"),
            Level::Scalar => (dot_scalar::<BlockQ8_0>, "scalar"),
        }
    }
}

#[derive(Clone, Copy)]
enum Level {
    #[cfg(target_arch = "x86_64")]
    Vnni,
    #[cfg(target_arch = "x86_64")]
    Avx2,
    Scalar,
}

/// What this CPU offers, detected once.
fn x86_level() -> Level {
    static LEVEL: std::sync::OnceLock<Level> = std::sync::OnceLock::new();
    *LEVEL.get_or_init(|| {
        #[cfg(target_arch = "x86_64")]
        {
            use std::arch::is_x86_feature_detected as has;
            if has!("avx2") && has!("fma") && has!("f16c") {
                if has!("avx512vnni") && has!("avx512vl") {
                    return Level::Vnni;
                }
                return Level::Avx2;
            }
        }
        Level::Scalar
    })
}

/// Which kernel this CPU runs for the 5- and 4-bit types, for the start-up log.
pub fn kernel_name() -> &'static str {
    BlockQ5_0::kernel().1
}

/// A quantized matrix of `n` rows (outputs) by `k` columns (inputs), rows contiguous.
struct QMatrix<B> {
    blocks: Vec<B>,
    n: usize,
    k: usize,
}

impl<B: WeightBlock> QMatrix<B> {
    fn from_qtensor(t: &QTensor) -> Result<Option<Self>> {
        if t.dtype() != B::DTYPE || t.shape().rank() != 2 {
            return Ok(None);
        }
        let (n, k) = t.shape().dims2()?;
        if k % QK != 0 {
            return Ok(None);
        }
        let bytes = t.data()?;
        if bytes.len() != n * k / QK * B::BYTES {
            candle_core::bail!("{:?} tensor of {n}x{k} has {} bytes", B::DTYPE, bytes.len());
        }
        let blocks = bytes.chunks_exact(B::BYTES).map(B::parse).collect();
        Ok(Some(QMatrix { blocks, n, k }))
    }

    fn dequantize_row(&self, r: usize, out: &mut [f32]) {
        let kb = self.k / QK;
        for (b, o) in self.blocks[r * kb..(r + 1) * kb]
            .iter()
            .zip(out.chunks_exact_mut(QK))
        {
            o.copy_from_slice(&b.values());
        }
    }

    fn matmul(&self, acts: &[BlockQ8], m: usize, dst: &mut [f32]) {
        let (n, kb) = (self.n, self.k / QK);
        let kernel = B::kernel().0;
        let dst_ptr = dst.as_mut_ptr() as usize;
        let work = |rows: std::ops::Range<usize>| {
            let mut out = [0f32; TILE];
            for r in rows {
                let w = &self.blocks[r * kb..(r + 1) * kb];
                let mut i = 0;
                while i < m {
                    let t = (m - i).min(TILE);
                    kernel(w, &acts[i * kb..(i + t) * kb], t, &mut out);
                    for (j, v) in out[..t].iter().enumerate() {
                        // SAFETY: every (activation row, weight row) cell of dst is written by
                        // exactly one work item, and dst holds m * n cells.
                        unsafe { *(dst_ptr as *mut f32).add((i + j) * n + r) = *v };
                    }
                    i += t;
                }
            }
        };
        candle_core::utils::barrier_pool().execute_chunked(n, work);
    }
}

/// A weight matrix this module has a kernel for.
pub struct CpuMatrix(Stored);

enum Stored {
    Q5_0(QMatrix<BlockQ5_0>),
    Q4_1(QMatrix<BlockQ4_1>),
    Q8_0(QMatrix<BlockQ8_0>),
}

impl CpuMatrix {
    /// The matrix when `t` is a 2-D tensor of a type this module runs; `None` otherwise.
    /// Q8_0 is taken only when its rows are not whole 256-value superblocks: otherwise candle's
    /// repacked AVX-512 tiles run it.
    pub fn from_qtensor(t: &QTensor) -> Result<Option<Self>> {
        if let Some(m) = QMatrix::from_qtensor(t)? {
            return Ok(Some(CpuMatrix(Stored::Q5_0(m))));
        }
        if let Some(m) = QMatrix::from_qtensor(t)? {
            return Ok(Some(CpuMatrix(Stored::Q4_1(m))));
        }
        let whole_superblocks = t.shape().dims().last().is_some_and(|k| k % 256 == 0);
        if whole_superblocks {
            return Ok(None);
        }
        Ok(QMatrix::from_qtensor(t)?.map(|m| CpuMatrix(Stored::Q8_0(m))))
    }

    fn dims(&self) -> (usize, usize) {
        match &self.0 {
            Stored::Q5_0(m) => (m.n, m.k),
            Stored::Q4_1(m) => (m.n, m.k),
            Stored::Q8_0(m) => (m.n, m.k),
        }
    }

    pub fn rows(&self) -> usize {
        self.dims().0
    }

    /// Row `r` as f32 (an embedding lookup).
    pub fn dequantize_row(&self, r: usize, out: &mut [f32]) {
        match &self.0 {
            Stored::Q5_0(m) => m.dequantize_row(r, out),
            Stored::Q4_1(m) => m.dequantize_row(r, out),
            Stored::Q8_0(m) => m.dequantize_row(r, out),
        }
    }

    /// `x @ selfᵀ` for f32 `x` of shape `(.., k)` on the CPU.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (n, width) = self.dims();
        let dims = x.dims();
        let k = *dims.last().unwrap_or(&0);
        if k != width {
            candle_core::bail!("quantized matmul: input width {k}, matrix width {width}");
        }
        let xs = x.flatten_all()?.to_vec1::<f32>()?;
        let m = xs.len() / k;
        let acts = quantize_rows(&xs);
        let mut dst = vec![0f32; m * n];
        match &self.0 {
            Stored::Q5_0(w) => w.matmul(&acts, m, &mut dst),
            Stored::Q4_1(w) => w.matmul(&acts, m, &mut dst),
            Stored::Q8_0(w) => w.matmul(&acts, m, &mut dst),
        }
        let mut shape = dims.to_vec();
        *shape.last_mut().expect("rank >= 1") = n;
        Tensor::from_vec(dst, shape, &Device::Cpu)
    }
}

fn quantize_rows(xs: &[f32]) -> Vec<BlockQ8> {
    xs.chunks_exact(QK)
        .map(|c| {
            let amax = c.iter().fold(0f32, |a, v| a.max(v.abs()));
            let d = amax / 127.0;
            let id = if d > 0.0 { 1.0 / d } else { 0.0 };
            let mut qs = [0i8; QK];
            for (q, v) in qs.iter_mut().zip(c) {
                *q = (v * id).round() as i8;
            }
            let s = d * qs.iter().map(|&q| q as i32).sum::<i32>() as f32;
            BlockQ8 { d, s, qs }
        })
        .collect()
}

fn dot_scalar<B: WeightBlock>(w: &[B], acts: &[BlockQ8], t: usize, out: &mut [f32; TILE]) {
    let kb = w.len();
    for (j, o) in out[..t].iter_mut().enumerate() {
        *o = w
            .iter()
            .enumerate()
            .map(|(b, wb)| {
                let y = &acts[j * kb + b];
                let v = wb.values();
                v.iter().zip(&y.qs).map(|(a, q)| a * *q as f32).sum::<f32>() * y.d
            })
            .sum();
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{BlockQ4_1, BlockQ5_0, BlockQ8, BlockQ8_0, TILE};
    use std::arch::x86_64::*;

    /// The 32 nibbles of `qs` as bytes 0..=15: weight j in byte j.
    #[inline(always)]
    unsafe fn nibbles(qs: &[u8; 16]) -> __m256i {
        unsafe {
            let lo = _mm_loadu_si128(qs.as_ptr() as *const __m128i);
            _mm256_and_si256(
                _mm256_set_m128i(_mm_srli_epi16(lo, 4), lo),
                _mm256_set1_epi8(0x0f),
            )
        }
    }

    /// The 32 weights of a Q5_0 block as signed bytes (-16..=15). A set fifth bit adds 16 to
    /// the nibble and the offset subtracts 16, so the byte is the nibble; a clear bit leaves
    /// nibble - 16, which is the nibble with the top four bits set (llama.cpp's trick).
    #[inline(always)]
    unsafe fn q5_0_bytes(b: &BlockQ5_0) -> __m256i {
        unsafe {
            let qh = u32::from_le_bytes(b.qh) as i32;
            let spread = _mm256_shuffle_epi8(
                _mm256_set1_epi32(qh),
                _mm256_set_epi64x(
                    0x0303030303030303,
                    0x0202020202020202,
                    0x0101010101010101,
                    0,
                ),
            );
            // Byte j is all ones exactly when bit j of qh is set.
            let set = _mm256_cmpeq_epi8(
                _mm256_or_si256(spread, _mm256_set1_epi64x(0x7fbfdfeff7fbfdfe)),
                _mm256_set1_epi64x(-1),
            );
            _mm256_or_si256(
                nibbles(&b.qs),
                _mm256_andnot_si256(set, _mm256_set1_epi8(0xf0u8 as i8)),
            )
        }
    }

    #[inline(always)]
    unsafe fn hsum(v: __m256) -> f32 {
        unsafe {
            let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
            let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
            _mm_cvtss_f32(_mm_add_ss(s, _mm_movehdup_ps(s)))
        }
    }

    /// Unsigned bytes times signed bytes, summed in groups of four into eight i32 lanes.
    #[inline(always)]
    unsafe fn dot_avx2(u: __m256i, s: __m256i) -> __m256i {
        unsafe { _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1)) }
    }

    #[inline(always)]
    unsafe fn dot_vnni(u: __m256i, s: __m256i) -> __m256i {
        unsafe { _mm256_dpbusd_epi32(_mm256_setzero_si256(), u, s) }
    }

    #[inline(always)]
    unsafe fn q8_0_bytes(b: &BlockQ8_0) -> __m256i {
        unsafe { _mm256_loadu_si256(b.qs.as_ptr() as *const __m256i) }
    }

    /// Q5_0 and Q8_0: the weights are signed, so the products are |w| * sign(y, w).
    macro_rules! signed_tile {
        ($name:ident, $features:literal, $dot:ident, $block:ty, $unpack:ident) => {
            #[target_feature(enable = $features)]
            unsafe fn $name<const T: usize>(w: &[$block], acts: &[BlockQ8], out: &mut [f32; TILE]) {
                let kb = w.len();
                let mut acc = [_mm256_setzero_ps(); T];
                for (b, wb) in w.iter().enumerate() {
                    let qw = unsafe { $unpack(wb) };
                    let aw = _mm256_sign_epi8(qw, qw);
                    let dw = wb.d.to_f32();
                    for (t, a) in acc.iter_mut().enumerate() {
                        let y = unsafe { acts.get_unchecked(t * kb + b) };
                        let qy = unsafe { _mm256_loadu_si256(y.qs.as_ptr() as *const __m256i) };
                        let sums = unsafe { $dot(aw, _mm256_sign_epi8(qy, qw)) };
                        *a =
                            _mm256_fmadd_ps(_mm256_set1_ps(dw * y.d), _mm256_cvtepi32_ps(sums), *a);
                    }
                }
                for (o, a) in out.iter_mut().zip(acc) {
                    *o = unsafe { hsum(a) };
                }
            }
        };
    }

    /// Q4_1: the nibbles are unsigned and multiply the activations directly; the offset adds
    /// m * Σy, which the activation block carries.
    macro_rules! q4_1_tile {
        ($name:ident, $features:literal, $dot:ident) => {
            #[target_feature(enable = $features)]
            unsafe fn $name<const T: usize>(
                w: &[BlockQ4_1],
                acts: &[BlockQ8],
                out: &mut [f32; TILE],
            ) {
                let kb = w.len();
                let mut acc = [_mm256_setzero_ps(); T];
                let mut offset = [0f32; T];
                for (b, wb) in w.iter().enumerate() {
                    let qw = unsafe { nibbles(&wb.qs) };
                    let (dw, mw) = (wb.d.to_f32(), wb.m.to_f32());
                    for t in 0..T {
                        let y = unsafe { acts.get_unchecked(t * kb + b) };
                        let qy = unsafe { _mm256_loadu_si256(y.qs.as_ptr() as *const __m256i) };
                        let sums = unsafe { $dot(qw, qy) };
                        acc[t] = _mm256_fmadd_ps(
                            _mm256_set1_ps(dw * y.d),
                            _mm256_cvtepi32_ps(sums),
                            acc[t],
                        );
                        offset[t] += mw * y.s;
                    }
                }
                for t in 0..T {
                    out[t] = unsafe { hsum(acc[t]) } + offset[t];
                }
            }
        };
    }

    signed_tile!(
        q5_0_avx2_t,
        "avx2,fma,f16c",
        dot_avx2,
        BlockQ5_0,
        q5_0_bytes
    );
    signed_tile!(
        q5_0_vnni_t,
        "avx2,fma,f16c,avx512vnni,avx512vl",
        dot_vnni,
        BlockQ5_0,
        q5_0_bytes
    );
    signed_tile!(
        q8_0_avx2_t,
        "avx2,fma,f16c",
        dot_avx2,
        BlockQ8_0,
        q8_0_bytes
    );
    signed_tile!(
        q8_0_vnni_t,
        "avx2,fma,f16c,avx512vnni,avx512vl",
        dot_vnni,
        BlockQ8_0,
        q8_0_bytes
    );
    q4_1_tile!(q4_1_avx2_t, "avx2,fma,f16c", dot_avx2);
    q4_1_tile!(q4_1_vnni_t, "avx2,fma,f16c,avx512vnni,avx512vl", dot_vnni);

    /// The monomorphised tile for `t` rows, as a safe function over runtime-detected features.
    macro_rules! dispatch {
        ($name:ident, $tile:ident, $block:ty, $why:literal) => {
            pub(super) fn $name(w: &[$block], acts: &[BlockQ8], t: usize, out: &mut [f32; TILE]) {
                // SAFETY: super::x86_level() picks this kernel only after detecting $why.
                unsafe {
                    match t {
                        1 => $tile::<1>(w, acts, out),
                        2 => $tile::<2>(w, acts, out),
                        3 => $tile::<3>(w, acts, out),
                        4 => $tile::<4>(w, acts, out),
                        5 => $tile::<5>(w, acts, out),
                        6 => $tile::<6>(w, acts, out),
                        7 => $tile::<7>(w, acts, out),
                        _ => $tile::<8>(w, acts, out),
                    }
                }
            }
        };
    }

    dispatch!(q5_0_avx2, q5_0_avx2_t, BlockQ5_0, "avx2, fma and f16c");
    dispatch!(
        q5_0_vnni,
        q5_0_vnni_t,
        BlockQ5_0,
        "avx2, fma, f16c, avx512vnni and avx512vl"
    );
    dispatch!(q4_1_avx2, q4_1_avx2_t, BlockQ4_1, "avx2, fma and f16c");
    dispatch!(q8_0_avx2, q8_0_avx2_t, BlockQ8_0, "avx2, fma and f16c");
    dispatch!(
        q8_0_vnni,
        q8_0_vnni_t,
        BlockQ8_0,
        "avx2, fma, f16c, avx512vnni and avx512vl"
    );
    dispatch!(
        q4_1_vnni,
        q4_1_vnni_t,
        BlockQ4_1,
        "avx2, fma, f16c, avx512vnni and avx512vl"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn random_matrix(n: usize, k: usize, seed: u64) -> Tensor {
        // A small LCG: reproducible without a dependency.
        let mut s = seed;
        let v: Vec<f32> = (0..n * k)
            .map(|_| {
                s = s
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((s >> 33) as f32 / (1u64 << 31) as f32) - 0.5
            })
            .collect();
        Tensor::from_vec(v, (n, k), &Device::Cpu).unwrap()
    }

    /// Checks the scalar kernel, the one this CPU picks, and `avx2` (what CPUs without VNNI
    /// run) when this CPU has AVX2.
    fn check<B: WeightBlock>(avx2: Option<Kernel<B>>) {
        let (n, k) = (72, 896);
        let w = QTensor::quantize(&random_matrix(n, k, 1), B::DTYPE).unwrap();
        let wf = w
            .dequantize(&Device::Cpu)
            .unwrap()
            .to_vec2::<f32>()
            .unwrap();
        let ours = QMatrix::<B>::from_qtensor(&w).unwrap().expect("right type");
        let whole = CpuMatrix::from_qtensor(&w).unwrap().expect("right type");
        let kb = k / QK;
        for m in [1, 2, 3, 4, 5, 6, 7, 8, 9, 37] {
            let x = random_matrix(m, k, 10 + m as u64);
            let acts = quantize_rows(&x.flatten_all().unwrap().to_vec1().unwrap());
            // Exact reference: candle's dequantized weights against our 8-bit activations.
            let want: Vec<Vec<f64>> = (0..m)
                .map(|i| {
                    (0..n)
                        .map(|r| {
                            (0..k)
                                .map(|c| {
                                    let y = &acts[i * kb + c / QK];
                                    wf[r][c] as f64 * (y.qs[c % QK] as f64 * y.d as f64)
                                })
                                .sum()
                        })
                        .collect()
                })
                .collect();
            let got = whole.forward(&x).unwrap().to_vec2::<f32>().unwrap();
            let mut kernels: Vec<(&str, Kernel<B>)> =
                vec![("scalar", dot_scalar::<B>), (B::kernel().1, B::kernel().0)];
            kernels.extend(avx2.map(|k| ("avx2", k)));
            for (name, kern) in kernels {
                let mut dst = vec![0f32; m * n];
                for r in 0..n {
                    let mut out = [0f32; TILE];
                    let mut i = 0;
                    while i < m {
                        let t = (m - i).min(TILE);
                        kern(
                            &ours.blocks[r * kb..(r + 1) * kb],
                            &acts[i * kb..],
                            t,
                            &mut out,
                        );
                        dst[(i * n + r)..]
                            .iter_mut()
                            .step_by(n)
                            .zip(&out[..t])
                            .for_each(|(d, o)| *d = *o);
                        i += t;
                    }
                }
                for i in 0..m {
                    for r in 0..n {
                        let (a, b, c) = (want[i][r] as f32, got[i][r], dst[i * n + r]);
                        // What is left is f32 summation order.
                        let tol = 1e-4 * (1.0 + a.abs());
                        let ty = B::DTYPE;
                        assert!(
                            (a - b).abs() < tol,
                            "{ty:?} forward m={m} [{i},{r}]: {a} vs {b}"
                        );
                        assert!(
                            (a - c).abs() < tol,
                            "{ty:?} {name} m={m} [{i},{r}]: {a} vs {c}"
                        );
                    }
                }
            }
        }
        // Embedding lookups: each row exactly as candle dequantizes it.
        let mut row = vec![0f32; k];
        for (r, expected) in wf.iter().enumerate() {
            whole.dequantize_row(r, &mut row);
            assert_eq!(&row, expected, "{:?} row {r}", B::DTYPE);
        }
    }

    #[test]
    fn q5_0_kernels_compute_the_exact_product_for_every_tile_size() {
        #[cfg(target_arch = "x86_64")]
        let avx2 = std::arch::is_x86_feature_detected!("avx2").then_some(x86::q5_0_avx2 as _);
        #[cfg(not(target_arch = "x86_64"))]
        let avx2 = None;
        check::<BlockQ5_0>(avx2);
    }

    #[test]
    fn q4_1_kernels_compute_the_exact_product_for_every_tile_size() {
        #[cfg(target_arch = "x86_64")]
        let avx2 = std::arch::is_x86_feature_detected!("avx2").then_some(x86::q4_1_avx2 as _);
        #[cfg(not(target_arch = "x86_64"))]
        let avx2 = None;
        check::<BlockQ4_1>(avx2);
    }

    #[test]
    fn q8_0_kernels_compute_the_exact_product_for_every_tile_size() {
        #[cfg(target_arch = "x86_64")]
        let avx2 = std::arch::is_x86_feature_detected!("avx2").then_some(x86::q8_0_avx2 as _);
        #[cfg(not(target_arch = "x86_64"))]
        let avx2 = None;
        check::<BlockQ8_0>(avx2);
    }

    #[test]
    fn other_types_are_left_to_candle() {
        // Q8_0 rows of whole superblocks run on candle's repacked tiles.
        let w = QTensor::quantize(&random_matrix(4, 512, 2), GgmlDType::Q8_0).unwrap();
        assert!(CpuMatrix::from_qtensor(&w).unwrap().is_none());
        let w = QTensor::quantize(&random_matrix(4, 256, 2), GgmlDType::Q4K).unwrap();
        assert!(CpuMatrix::from_qtensor(&w).unwrap().is_none());
    }
}
