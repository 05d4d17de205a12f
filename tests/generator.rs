//! The decoder behind every generated answer, on the real SmolLM2 file: one forward pass over
//! several sequences (prompt chunks and decode tokens together) gives each the logits it gets
//! alone, a prefix of a kept cache continues as the whole did, and both agree with candle's own
//! llama implementation (`quantized_llama`) on the same file.

use candle_core::quantized::gguf_file;
use candle_core::quantized::tokenizer::TokenizerFromGguf;
use candle_core::{Device, Tensor};
use kefu::config::Config;
use kefu::runtime::gguf_lm::{GgufLm, KvCache, Part};
use kefu::runtime::registry::Registry;

const MODEL: &str = "smollm2-135m";

struct Loaded {
    lm: GgufLm,
    reference: candle_transformers::models::quantized_llama::ModelWeights,
    tokenizer: tokenizers::Tokenizer,
}

fn load() -> Loaded {
    let dir = std::env::var_os("KEFU_MODELS_DIR")
        .map(Into::into)
        .unwrap_or_else(|| Config::default().models_dir);
    let reg = Registry::open(None, &dir, false).expect("built-in manifest");
    let files = reg.ensure(MODEL).expect("model fetched and verified");
    let name = files.spec.files[0].name.clone();
    let path = files.path(&name).expect("the GGUF file");
    let read = || {
        let mut f = std::fs::File::open(path).expect("open the GGUF file");
        let ct = gguf_file::Content::read(&mut f).expect("GGUF header");
        (ct, f)
    };
    let (ct, mut f) = read();
    let lm = GgufLm::from_gguf(&ct, &mut f, &Device::Cpu, 512).expect("kefu's decoder loads");
    let tokenizer = tokenizers::Tokenizer::from_gguf(&ct).expect("tokenizer");
    let (ct, mut f) = read();
    let reference = candle_transformers::models::quantized_llama::ModelWeights::from_gguf(
        ct,
        &mut f,
        &Device::Cpu,
    )
    .expect("candle's llama loads");
    Loaded {
        lm,
        reference,
        tokenizer,
    }
}

fn tokens(l: &Loaded, text: &str) -> Vec<u32> {
    l.tokenizer.encode(text, false).unwrap().get_ids().to_vec()
}

fn row(logits: &Tensor, i: usize) -> Vec<f32> {
    logits.get(i).unwrap().to_vec1().unwrap()
}

/// Logits after the last of `tokens`, read alone into `cache`.
fn alone(l: &Loaded, tokens: &[u32], cache: &mut KvCache) -> Vec<f32> {
    let mut parts = [Part {
        tokens,
        cache,
        logits: true,
    }];
    row(&l.lm.forward_parts(&mut parts).unwrap().unwrap(), 0)
}

fn argmax(v: &[f32]) -> usize {
    v.iter()
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(b.1))
        .unwrap()
        .0
}

/// Cosine similarity, and the largest difference against the largest logit.
fn agreement(a: &[f32], b: &[f32]) -> (f32, f32) {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let norm = |v: &[f32]| v.iter().map(|x| x * x).sum::<f32>().sqrt();
    let diff = a
        .iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0f32, f32::max);
    let scale = a.iter().fold(0f32, |m, x| m.max(x.abs()));
    (dot / (norm(a) * norm(b)), diff / scale)
}

#[test]
fn sequences_read_together_get_what_each_gets_alone() {
    let mut l = load();
    let a = tokens(
        &l,
        "The router keeps dropping the Wi-Fi connection every evening. What should I check first?",
    );
    let b = tokens(&l, "退款多久到账？ How long does a refund take to arrive?");
    assert!(a.len() > 12 && b.len() > 4);

    // Each alone.
    let mut cache_a = l.lm.new_cache();
    let logits_a = alone(&l, &a, &mut cache_a);
    let mut cache_b = l.lm.new_cache();
    let logits_b = alone(&l, &b, &mut cache_b);
    let next_b = argmax(&logits_b) as u32;
    let logits_b_next = alone(&l, &[next_b], &mut cache_b);

    // candle's llama on the same file: the same model, computed by other kernels (they round
    // activations differently), so close rather than equal.
    let reference = l
        .reference
        .forward(
            &Tensor::new(a.as_slice(), &Device::Cpu)
                .unwrap()
                .unsqueeze(0)
                .unwrap(),
            0,
        )
        .unwrap();
    let reference: Vec<f32> = reference.flatten_all().unwrap().to_vec1().unwrap();
    let (cos, diff) = agreement(&reference, &logits_a);
    assert!(
        cos > 0.995 && diff < 0.1,
        "against candle's llama: cosine {cos}, {diff}"
    );
    assert_eq!(argmax(&reference), argmax(&logits_a));

    // Read in chunks, a prompt's logits are not bit for bit those of reading it whole: the
    // activations are rounded to 8 bits per row, and a rounding that flips on a float
    // difference in the last place moves a logit by a quantization step. Same top token, and
    // close, but the exact checks below compare like with like: the same chunks alone.
    let split = 7;
    let chunked = |at: usize| {
        let mut c = l.lm.new_cache();
        let _ = alone(&l, &a[..at], &mut c);
        alone(&l, &a[at..], &mut c)
    };
    let a_in_two = chunked(split);
    let (cos, _) = agreement(&logits_a, &a_in_two);
    assert!(cos > 0.999, "a in two chunks against whole: cosine {cos}");
    assert_eq!(argmax(&logits_a), argmax(&a_in_two));

    // Together: round 1 reads the start of a (no logits wanted) and all of b; round 2 the rest
    // of a and b's first generated token.
    let (mut ca, mut cb) = (l.lm.new_cache(), l.lm.new_cache());
    let mut round1 = [
        Part {
            tokens: &a[..split],
            cache: &mut ca,
            logits: false,
        },
        Part {
            tokens: &b,
            cache: &mut cb,
            logits: true,
        },
    ];
    let out1 = l.lm.forward_parts(&mut round1).unwrap().unwrap();
    assert_eq!(
        out1.dims(),
        &[1, logits_a.len()],
        "one row: the part that asked"
    );
    let (cos, _) = agreement(&logits_b, &row(&out1, 0));
    assert!(cos > 0.9999, "b read beside a: cosine {cos}");
    let mut round2 = [
        Part {
            tokens: &a[split..],
            cache: &mut ca,
            logits: true,
        },
        Part {
            tokens: &[next_b],
            cache: &mut cb,
            logits: true,
        },
    ];
    let out2 = l.lm.forward_parts(&mut round2).unwrap().unwrap();
    let (cos, diff) = agreement(&a_in_two, &row(&out2, 0));
    assert!(
        cos > 0.99999 && diff < 1e-3,
        "a beside b: cosine {cos}, {diff}"
    );
    let (cos, diff) = agreement(&logits_b_next, &row(&out2, 1));
    assert!(
        cos > 0.99999 && diff < 1e-3,
        "b's decode step beside a: cosine {cos}, {diff}"
    );
    assert_eq!(ca.len(), a.len());
    assert_eq!(cb.len(), b.len() + 1);

    // A kept prefix of a's cache (all but the last token) continues as reading it all did.
    let mut from_prefix = cache_a.prefix(a.len() - 1).unwrap();
    assert_eq!(from_prefix.len(), a.len() - 1);
    assert!(from_prefix.bytes() < cache_a.bytes());
    let resumed = alone(&l, &a[a.len() - 1..], &mut from_prefix);
    let (cos, diff) = agreement(&chunked(a.len() - 1), &resumed);
    assert!(
        cos > 0.99999 && diff < 1e-3,
        "resumed from a prefix: cosine {cos}, {diff}"
    );
    assert_eq!(argmax(&logits_a), argmax(&resumed));
}
