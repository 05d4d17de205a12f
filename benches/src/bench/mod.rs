//! `kefu bench`: speed on this machine, measured through the same code paths the server runs,
//! and (`compare`) side by side with the engines a user would run instead.

pub mod compare;
pub mod load;
mod plot;
pub mod signals;

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use kefu::config::Config;
use kefu::knowledge::Actor;
use kefu::knowledge::card::CardInput;
use kefu::knowledge::import::Item;
use kefu::knowledge::retrieval::Filters;
use kefu::runtime::embed::TextKind;

const PRODUCTS: [&str; 8] = [
    "RT-AX58U router",
    "X200 laptop",
    "Fibre 500 plan",
    "Z9 phone",
    "光猫 HG8145",
    "5G 畅享套餐",
    "智能音箱 S1",
    "平板 P10",
];
const EN_TOPICS: [&str; 6] = [
    "reset",
    "warranty claim",
    "slow connection",
    "billing dispute",
    "delivery delay",
    "return and refund",
];
const ZH_TOPICS: [&str; 6] = [
    "恢复出厂设置",
    "保修申请",
    "网速慢",
    "账单有误",
    "物流延迟",
    "退货退款",
];

fn card(i: usize) -> CardInput {
    let product = PRODUCTS[i % PRODUCTS.len()];
    let code = format!("SKU-{i:05}");
    if i.is_multiple_of(2) {
        let topic = EN_TOPICS[(i / PRODUCTS.len()) % EN_TOPICS.len()];
        CardInput {
            title: format!("{product}: {topic} ({code})"),
            body: format!(
                "For the {product} (item {code}), a {topic} is handled in three steps. First check the order in My Orders and note the order number. \\
                 Then follow the instructions on screen; most customers finish in under ten minutes. If it still fails after {n} attempts, \\
                 contact support with the order number and a photo of the label.",
                n = i % 5 + 2
            ),
            tags: vec!["bench".into()],
            language: Some("en".into()),
            channels: vec![],
        }
    } else {
        let topic = ZH_TOPICS[(i / PRODUCTS.len()) % ZH_TOPICS.len()];
        CardInput {
            title: format!("{product}{topic}（{code}）"),
            body: format!(
                "{product}（编号{code}）的{topic}分三步处理：先在“我的订单”中找到订单号；然后按照页面提示操作，大多数客户十分钟内即可完成；如果尝试{n}次仍然失败，请携带订单号和标签照片联系客服。",
                n = i % 5 + 2
            ),
            tags: vec!["bench".into()],
            language: Some("zh".into()),
            channels: vec![],
        }
    }
}

/// Card-length passages, half English and half Chinese: what `bench retrieval` embeds.
pub fn passages(n: usize) -> Vec<String> {
    (0..n).map(|i| card(i).body).collect()
}

/// Passages per second, embedding `texts` in batches of 32; and the vectors.
pub async fn embed_throughput(
    embedder: &kefu::runtime::embed::EmbedPool,
    texts: &[String],
) -> anyhow::Result<(f64, Vec<Vec<f32>>)> {
    let t = Instant::now();
    let mut vectors = Vec::with_capacity(texts.len());
    for chunk in texts.chunks(32) {
        vectors.extend(embedder.embed(chunk.to_vec(), TextKind::Passage).await?);
    }
    Ok((texts.len() as f64 / t.elapsed().as_secs_f64(), vectors))
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

pub async fn retrieval(
    mut cfg: Config,
    cards: usize,
    queries: usize,
    sentences: usize,
    json: Option<PathBuf>,
    data_dir: Option<PathBuf>,
) -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    cfg.data_dir = data_dir.unwrap_or_else(|| tmp.path().join("data"));
    cfg.limits.embed_queue = cfg.limits.embed_queue.max(1024);
    let state = kefu::server::build(cfg).await?;
    let k = &state.knowledge;
    let threads = candle_core::utils::get_num_threads();

    // 1. Embedding throughput: passages of card length, batches of 32.
    let (embed_per_s, _) = embed_throughput(k.embedder(), &passages(sentences)).await?;
    eprintln!("embedding: {embed_per_s:.1} passages/s (batch 32, {threads} threads)");

    // 2. Indexing: import and publish, through the same path as POST /v1/cards/import.
    // A kept data directory resumes where its last run stopped.
    let already = k.index_status().await?.published_cards;
    anyhow::ensure!(
        already <= cards,
        "the data directory holds {already} cards, more than --cards {cards}"
    );
    let items: Vec<Item> = (already..cards)
        .map(|i| Item {
            source: format!("bench:{i}"),
            card: Ok(card(i)),
        })
        .collect();
    let bar =
        indicatif::ProgressBar::new_spinner().with_message(format!("importing {cards} cards"));
    bar.enable_steady_tick(std::time::Duration::from_millis(200));
    let t = Instant::now();
    let report = k.import(items, true, &Actor("system:bench".into())).await;
    let index_secs = t.elapsed().as_secs_f64();
    bar.finish_and_clear();
    anyhow::ensure!(
        report.failed == 0,
        "{} cards failed to import",
        report.failed
    );
    let status = k.index_status().await?;
    let indexed = cards - already;
    let index_rate = indexed as f64 / index_secs;
    eprintln!(
        "indexing: {indexed} cards in {index_secs:.1} s ({index_rate:.1} cards/s); {} vectors",
        status.vectors
    );

    // 3. Search latency, one query at a time, end to end below HTTP.
    let mut lat = Vec::with_capacity(queries);
    let mut embed_lat = Vec::with_capacity(queries);
    for i in 0..queries {
        let q = match i % 3 {
            0 => format!(
                "how do I get a {} for my {}",
                EN_TOPICS[i % EN_TOPICS.len()],
                PRODUCTS[i % 4]
            ),
            1 => format!(
                "{}怎么{}",
                PRODUCTS[4 + i % 4],
                ZH_TOPICS[i % ZH_TOPICS.len()]
            ),
            _ => format!("SKU-{:05}", (i * 37) % cards),
        };
        let t = Instant::now();
        k.embedder().embed(vec![q.clone()], TextKind::Query).await?;
        embed_lat.push(t.elapsed().as_secs_f64() * 1e3);
        let t = Instant::now();
        let hits = k.search(&q, 5, Filters::default()).await?;
        lat.push(t.elapsed().as_secs_f64() * 1e3);
        if i % 3 == 2 {
            let want = format!("SKU-{:05}", (i * 37) % cards);
            anyhow::ensure!(
                hits.first().is_some_and(|h| h.title.contains(&want)),
                "exact code {want} not ranked first"
            );
        }
    }
    lat.sort_by(f64::total_cmp);
    embed_lat.sort_by(f64::total_cmp);
    let (p50, p99) = (percentile(&lat, 0.5), percentile(&lat, 0.99));
    let e50 = percentile(&embed_lat, 0.5);
    println!("| measure | value |");
    println!("|---|---|");
    println!("| embedder | {} ({} threads) |", k.embedder().id(), threads);
    println!("| embedding throughput, batch 32 | {embed_per_s:.1} passages/s |");
    if indexed > 0 {
        println!("| indexing (import + publish) | {index_rate:.1} cards/s ({indexed} cards) |");
    }
    println!("| search latency p50 / p99 at {cards} cards | {p50:.1} ms / {p99:.1} ms |");
    println!("| of which query embedding p50 | {e50:.1} ms |");
    if let Some(path) = json {
        let v = serde_json::json!({
            "embedder": k.embedder().id(), "threads": threads, "embed_passages_per_s": embed_per_s,
            "cards": cards, "vectors": status.vectors, "index_cards_per_s": index_rate, "cards_indexed_this_run": indexed,
            "search_p50_ms": p50, "search_p99_ms": p99, "query_embed_p50_ms": e50, "queries": queries,
        });
        std::fs::write(&path, serde_json::to_string_pretty(&v)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

/// `kefu bench generate`: time to first token and decode speed of a generator, alone and with
/// `concurrency` conversations at once, through the same scheduler the server uses.
pub async fn generate(
    cfg: Config,
    model: Option<String>,
    concurrency: Vec<usize>,
    max_tokens: usize,
    json: Option<PathBuf>,
) -> anyhow::Result<serde_json::Value> {
    use kefu::runtime::generate::{ChatMessage, GenEvent, GenPool, Generator, SamplingParams};
    let reg = kefu::runtime::registry::Registry::open(
        cfg.manifest.as_deref(),
        &cfg.models_dir,
        cfg.offline,
    )?;
    let id = model
        .or_else(|| cfg.models.generator.clone())
        .context("no chat model is configured (models.generator): name one with --model")?;
    let files = reg.ensure(&id)?;
    let dev = kefu::runtime::device::select();
    let started = Instant::now();
    let generator = Generator::load(&files, &dev, cfg.limits.gen_context)?;
    let load_s = started.elapsed().as_secs_f64();
    let max_n = concurrency.iter().copied().max().unwrap_or(1);
    // Nothing waits long here (at most `max_n` at once), so no time bound. No prefix cache:
    // every stream has the same prompt, and the first token is to time reading it.
    let pool = GenPool::start(generator, max_n, max_n * 2, std::time::Duration::MAX, 0)?;
    eprintln!("{id}: {} loaded in {load_s:.1} s", pool.architecture());
    let prompt = pool.render_chat(&[
        ChatMessage::new("system", "You are a helpful customer-service assistant."),
        ChatMessage::new(
            "user",
            "My router keeps dropping the Wi-Fi connection every evening. What should I check?",
        ),
    ])?;
    let prompt_tokens = pool.count_tokens(&prompt)?;
    let mut rows = Vec::new();
    for &n in &concurrency {
        let t0 = Instant::now();
        let mut tasks = Vec::new();
        for i in 0..n {
            let params = SamplingParams {
                max_tokens,
                seed: i as u64,
                ..Default::default()
            };
            let mut rx = pool.generate(prompt.clone(), params)?;
            tasks.push(tokio::spawn(async move {
                let start = Instant::now();
                let mut first = None;
                let mut tokens = 0;
                let mut text = String::new();
                while let Some(ev) = rx.recv().await {
                    match ev {
                        GenEvent::Delta(d) => {
                            first.get_or_insert(start.elapsed().as_secs_f64());
                            text.push_str(&d);
                        }
                        GenEvent::Done {
                            completion_tokens, ..
                        } => tokens = completion_tokens,
                        GenEvent::Failed(e) => return Err(anyhow::anyhow!(e)),
                    }
                }
                Ok::<_, anyhow::Error>((
                    first.unwrap_or(f64::NAN),
                    tokens,
                    start.elapsed().as_secs_f64(),
                    text,
                ))
            }));
        }
        let mut ttft = Vec::new();
        let mut total_tokens = 0;
        let mut per_stream = Vec::new();
        let mut sample = String::new();
        for t in tasks {
            let (first, tokens, total, text) = t.await??;
            if sample.is_empty() {
                sample = text;
            }
            ttft.push(first);
            total_tokens += tokens;
            if tokens > 1 {
                per_stream.push((tokens - 1) as f64 / (total - first));
            }
        }
        let wall = t0.elapsed().as_secs_f64();
        ttft.sort_by(f64::total_cmp);
        let row = serde_json::json!({
            "concurrency": n,
            "prompt_tokens": prompt_tokens,
            "ttft_p50_s": ttft[ttft.len() / 2],
            "ttft_max_s": ttft[ttft.len() - 1],
            "decode_tok_s_per_stream": per_stream.iter().sum::<f64>() / per_stream.len().max(1) as f64,
            "aggregate_tok_s": total_tokens as f64 / wall,
            "wall_s": wall,
            "sample": sample,
        });
        println!("{row}");
        rows.push(row);
    }
    let out =
        serde_json::json!({"model": id, "load_s": load_s, "max_tokens": max_tokens, "runs": rows});
    if let Some(p) = json {
        std::fs::write(&p, serde_json::to_string_pretty(&out)?).context("writing the results")?;
    }
    Ok(out)
}

/// `kefu bench vectors`: the vector backends alone, on the same points. Indexing throughput
/// (`upsert_card` per card, as `kefu index rebuild` does), search latency (k = 10, one query at a
/// time) and recall@10 against exact search (a full scan of the same points).
///
/// The points are the stored vectors of a data directory's published cards (real e5 embeddings,
/// as `kefu bench retrieval --data-dir` leaves them). For more cards than it holds, the extra
/// points are synthetic: each mixes two stored vectors (0.6 / 0.4, chosen by a fixed
/// pseudo-random sequence) plus a little noise, renormalised, so they fall among the real ones
/// rather than in empty space. The queries are real: embedded question texts.
pub async fn vectors(
    mut cfg: Config,
    data_dir: PathBuf,
    sizes: Vec<usize>,
    queries: usize,
    qdrant: Option<String>,
    json: Option<PathBuf>,
) -> anyhow::Result<Vec<serde_json::Value>> {
    cfg.data_dir = data_dir;
    cfg.vector = Default::default();
    let k = kefu::server::knowledge_only(&cfg).await?;
    let rows = vector_backends(&k, sizes, queries, qdrant).await?;
    if let Some(path) = json {
        std::fs::write(&path, serde_json::to_string_pretty(&rows)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(rows)
}

/// `bench vectors` on the published cards of `k`'s store: one row per backend and size.
pub async fn vector_backends(
    k: &kefu::knowledge::Knowledge,
    sizes: Vec<usize>,
    queries: usize,
    qdrant: Option<String>,
) -> anyhow::Result<Vec<serde_json::Value>> {
    use kefu::store::SearchFilter;
    use kefu::store::vector::embedded::EmbeddedIndex;
    use kefu::store::vector::qdrant::QdrantIndex;
    use kefu::store::vector::{Point, VectorIndex};
    use kefu::vecmath::dot;
    use std::collections::HashSet;
    use std::sync::Arc;

    let store = k.store().clone();
    let stored = tokio::task::spawn_blocking(move || -> anyhow::Result<_> {
        let published: HashSet<String> = store.published_ids()?.into_iter().collect();
        Ok(store
            .all_chunks()?
            .into_iter()
            .filter(|c| published.contains(&c.card_id))
            .collect::<Vec<_>>())
    })
    .await??;
    anyhow::ensure!(
        !stored.is_empty(),
        "the data directory holds no published cards: run `kefu bench retrieval --data-dir DIR` first"
    );
    // Cards in store order, each with its chunks.
    let mut cards: Vec<(String, Vec<Point>)> = Vec::new();
    for c in stored {
        if cards.last().is_none_or(|(id, _)| *id != c.card_id) {
            cards.push((c.card_id.clone(), Vec::new()));
        }
        let last = cards.last_mut().expect("pushed above");
        last.1.push(Point {
            chunk_id: c.chunk_id,
            vector: c.vector,
            meta: c.meta,
        });
    }
    let real = cards.len();
    let dim = k.embedder().dim();
    let texts: Vec<String> = (0..queries)
        .map(|i| match i % 2 {
            0 => format!(
                "how do I get a {} for my {}",
                EN_TOPICS[i % EN_TOPICS.len()],
                PRODUCTS[i % 4]
            ),
            _ => format!(
                "{}怎么{}",
                PRODUCTS[4 + i % 4],
                ZH_TOPICS[i % ZH_TOPICS.len()]
            ),
        })
        .collect();
    let mut qv = Vec::new();
    for chunk in texts.chunks(32) {
        qv.extend(k.embedder().embed(chunk.to_vec(), TextKind::Query).await?);
    }
    eprintln!(
        "{real} stored cards ({dim} dimensions), {} queries",
        qv.len()
    );

    let mut rows = Vec::new();
    for &n in &sizes {
        let points = synthetic_cards(&cards, n);
        let all: Vec<(i64, &[f32])> = points
            .iter()
            .flat_map(|(_, ps)| ps.iter().map(|p| (p.chunk_id, p.vector.as_slice())))
            .collect();
        // Exact top 10 by a full scan, the reference for recall.
        let exact: Vec<HashSet<i64>> = qv
            .iter()
            .map(|q| {
                let mut s: Vec<(f32, i64)> = all.iter().map(|(id, v)| (dot(q, v), *id)).collect();
                let last = 9.min(s.len() - 1);
                s.select_nth_unstable_by(last, |a, b| b.0.total_cmp(&a.0));
                s.truncate(10);
                s.into_iter().map(|(_, id)| id).collect()
            })
            .collect();
        let mut backends: Vec<(&str, Arc<dyn VectorIndex>, Option<String>)> =
            vec![("embedded", Arc::new(EmbeddedIndex::new(dim)), None)];
        if let Some(url) = &qdrant {
            let collection = format!("kefu_bench_{}_{n}", std::process::id());
            let vc = kefu::config::VectorConfig {
                backend: kefu::config::VectorBackend::Qdrant,
                url: url.clone(),
                collection: collection.clone(),
                ..Default::default()
            };
            let q = QdrantIndex::new(&vc, dim)?;
            q.connect().await?;
            backends.push(("qdrant", q, Some(collection)));
        }
        for (name, index, collection) in backends {
            let bar = indicatif::ProgressBar::new(points.len() as u64)
                .with_message(format!("{name}: indexing {n} cards"));
            let t = Instant::now();
            for (card, ps) in &points {
                index.upsert_card(card, ps.clone()).await?;
                bar.inc(1);
            }
            let index_secs = t.elapsed().as_secs_f64();
            bar.finish_and_clear();
            // Points in an approximate (HNSW) index; the rest are searched exactly.
            let mut in_hnsw = None;
            if let (Some(url), Some(c)) = (&qdrant, &collection) {
                in_hnsw = Some(wait_for_qdrant_index(url, c).await?);
            }
            let settle_secs = t.elapsed().as_secs_f64() - index_secs;
            let mut lat = Vec::new();
            let mut recall = 0.0;
            for (q, want) in qv.iter().zip(&exact) {
                let t = Instant::now();
                let hits = index.search(q.clone(), 10, SearchFilter::default()).await?;
                lat.push(t.elapsed().as_secs_f64() * 1e3);
                recall += hits.iter().filter(|h| want.contains(&h.chunk_id)).count() as f64
                    / want.len() as f64;
            }
            lat.sort_by(f64::total_cmp);
            let row = serde_json::json!({
                "backend": name, "cards": n, "vectors": all.len(), "real_cards": real.min(n),
                "index_cards_per_s": n as f64 / index_secs, "index_secs": index_secs,
                "optimize_secs": settle_secs,
                "search_p50_ms": percentile(&lat, 0.5), "search_p99_ms": percentile(&lat, 0.99),
                "recall_at_10": recall / qv.len() as f64, "in_hnsw_index": in_hnsw,
            });
            eprintln!("{row}");
            rows.push(row);
            if let (Some(url), Some(c)) = (&qdrant, &collection) {
                let client = qdrant_client::Qdrant::from_url(url).build()?;
                client.delete_collection(c.as_str()).await?;
            }
        }
    }
    println!("| backend | cards | indexing | search p50 / p99 | recall@10 | approximate (HNSW) |");
    println!("|---|---|---|---|---|---|");
    for r in &rows {
        println!(
            "| {} | {} | {:.0} cards/s{} | {:.2} ms / {:.2} ms | {:.3} | {} |",
            r["backend"].as_str().unwrap_or(""),
            r["cards"],
            r["index_cards_per_s"].as_f64().unwrap_or(0.0),
            match r["optimize_secs"].as_f64() {
                Some(s) if s > 0.5 => format!(" (+{s:.0} s building the HNSW graph)"),
                _ => String::new(),
            },
            r["search_p50_ms"].as_f64().unwrap_or(0.0),
            r["search_p99_ms"].as_f64().unwrap_or(0.0),
            r["recall_at_10"].as_f64().unwrap_or(0.0),
            match r["in_hnsw_index"].as_u64() {
                Some(n) => format!("{n} of {} vectors", r["vectors"]),
                None => "no: exact scan".to_string(),
            },
        );
    }
    Ok(rows)
}

/// The first `n` cards: the stored ones, then synthetic ones mixed from them (see `vectors`).
fn synthetic_cards(
    cards: &[(String, Vec<kefu::store::vector::Point>)],
    n: usize,
) -> Vec<(String, Vec<kefu::store::vector::Point>)> {
    let mut out: Vec<_> = cards.iter().take(n).cloned().collect();
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = || {
        // xorshift64: reproducible without a dependency.
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let base = 1i64 << 40;
    for i in cards.len()..n {
        let a = &cards[next() as usize % cards.len()].1[0];
        let b = &cards[next() as usize % cards.len()].1[0];
        let mut v: Vec<f32> = a
            .vector
            .iter()
            .zip(&b.vector)
            .map(|(x, y)| {
                let noise = ((next() % 2001) as f32 / 1000.0 - 1.0) * 0.01;
                0.6 * x + 0.4 * y + noise
            })
            .collect();
        let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-6);
        v.iter_mut().for_each(|x| *x /= norm);
        out.push((
            format!("synthetic-{i}"),
            vec![kefu::store::vector::Point {
                chunk_id: base + i as i64,
                vector: v,
                meta: a.meta.clone(),
            }],
        ));
    }
    out
}

/// Qdrant builds its HNSW graph after the writes return: wait until the collection is green,
/// so that searches measure the index and not a scan of unindexed segments.
async fn wait_for_qdrant_index(url: &str, collection: &str) -> anyhow::Result<u64> {
    let client = qdrant_client::Qdrant::from_url(url).build()?;
    let deadline = Instant::now() + std::time::Duration::from_secs(1800);
    loop {
        let info = client.collection_info(collection).await?;
        let r = info.result.context("no collection info")?;
        let green = r.status == qdrant_client::qdrant::CollectionStatus::Green as i32;
        if green {
            let indexed = r.indexed_vectors_count.unwrap_or(0);
            eprintln!(
                "qdrant: {} points, {indexed} in the HNSW index, {} segments",
                r.points_count.unwrap_or(0),
                r.segments_count
            );
            return Ok(indexed);
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "Qdrant did not finish indexing in 30 min"
        );
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
}
