//! Prompt reuse: the keys and values of prompts already read, kept so that a new prompt that
//! begins the same way (the channel's instructions, the same cards for the same popular
//! question, the earlier turns of the same conversation) starts from them instead of reading
//! those tokens again.
//!
//! Keyed by token ids, not text: two texts that tokenize alike share, and a match is exact. A
//! lookup takes the longest common prefix with any kept prompt (a linear scan: the cache holds
//! tens of prompts, and comparing token ids costs microseconds beside a forward pass), cut to
//! whole chunks of the scheduler's prompt chunk, as vLLM reuses whole blocks: the rest of the
//! prompt is then read in the same pieces as the first time, and a request alone gets the same
//! reply bit for bit. (Resumed at any token, the first piece differs, and the 8-bit rounding of
//! its activations moved a sampled reply.) Bounded by bytes; the least recently used prompt
//! goes first. Unlike vLLM's paged blocks, a sequence copies the prefix it reuses into its own
//! cache: a memcpy, and every sequence's cache stays contiguous.

use std::sync::atomic::{AtomicU64, Ordering};

use super::gguf_lm::KvCache;

/// Counters for `/metrics`.
#[derive(Default)]
pub struct PrefixStats {
    /// Prompts looked up, and those that started from a kept prefix.
    pub lookups: AtomicU64,
    pub hits: AtomicU64,
    /// Prompt tokens not read again thanks to a kept prefix.
    pub reused_tokens: AtomicU64,
    /// Bytes held now, and the bound.
    pub bytes: AtomicU64,
    pub capacity: AtomicU64,
}

struct Entry {
    tokens: Vec<u32>,
    kv: KvCache,
    bytes: usize,
    /// The cache's clock when it was last used.
    used: u64,
}

/// Kept prompt caches, at most `capacity` bytes of them.
pub struct PrefixCache {
    entries: Vec<Entry>,
    bytes: usize,
    capacity: usize,
    /// Reused prefixes are whole multiples of this many tokens.
    chunk: usize,
    clock: u64,
}

impl PrefixCache {
    pub fn new(capacity: usize, chunk: usize) -> Self {
        PrefixCache {
            entries: Vec::new(),
            bytes: 0,
            capacity,
            chunk: chunk.max(1),
            clock: 0,
        }
    }

    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// The cache of the longest kept prefix of `prompt` in whole chunks and its length in
    /// tokens, or `None` when no kept prompt shares a chunk with it. The prefix stops short of
    /// the whole prompt: the model must read at least one token to give the logits that choose
    /// the first token of the reply.
    pub fn lookup(&mut self, prompt: &[u32]) -> candle_core::Result<Option<(usize, KvCache)>> {
        let limit = prompt.len().saturating_sub(1);
        let chunk = self.chunk;
        let best = self
            .entries
            .iter_mut()
            .map(|e| {
                let common = e.tokens.iter().zip(prompt).take_while(|(a, b)| a == b);
                (common.count().min(limit) / chunk * chunk, e)
            })
            .max_by_key(|(n, _)| *n);
        match best {
            Some((n, e)) if n > 0 => {
                self.clock += 1;
                e.used = self.clock;
                Ok(Some((n, e.kv.prefix(n)?)))
            }
            _ => Ok(None),
        }
    }

    /// Keeps the cache of a prompt just read (`kv` holds exactly `tokens`). A prompt that a
    /// kept one already begins with adds nothing; kept prompts it begins with are replaced by
    /// it. Then the least recently used go until the bound holds.
    pub fn insert(&mut self, tokens: &[u32], kv: &KvCache) {
        let bytes = kv.bytes();
        if bytes > self.capacity || kv.len() != tokens.len() {
            return;
        }
        self.clock += 1;
        if let Some(e) = self
            .entries
            .iter_mut()
            .find(|e| e.tokens.starts_with(tokens))
        {
            e.used = self.clock;
            return;
        }
        self.entries.retain(|e| !tokens.starts_with(&e.tokens));
        self.entries.push(Entry {
            tokens: tokens.to_vec(),
            kv: kv.clone(),
            bytes,
            used: self.clock,
        });
        self.bytes = self.entries.iter().map(|e| e.bytes).sum();
        while self.bytes > self.capacity {
            let oldest = self
                .entries
                .iter()
                .enumerate()
                .min_by_key(|(_, e)| e.used)
                .map(|(i, _)| i)
                .expect("over the bound means an entry is held");
            self.bytes -= self.entries.swap_remove(oldest).bytes;
        }
    }

    /// Publishes the bytes held and the bound.
    pub fn report(&self, stats: &PrefixStats) {
        stats.bytes.store(self.bytes as u64, Ordering::Relaxed);
        stats
            .capacity
            .store(self.capacity as u64, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A cache whose keys are the token ids themselves, one value per token and layer.
    fn kv(tokens: &[u32]) -> KvCache {
        KvCache::of_tokens(tokens, 2)
    }

    fn ids(n: u32, start: u32) -> Vec<u32> {
        (start..start + n).collect()
    }

    #[test]
    fn the_longest_shared_prefix_in_whole_chunks_is_reused() {
        let mut c = PrefixCache::new(1 << 20, 10);
        let system = ids(40, 0);
        let a = [system.clone(), ids(25, 1000)].concat();
        let b = [system.clone(), ids(12, 1000), ids(30, 5000)].concat();
        c.insert(&a, &kv(&a));
        c.insert(&b, &kv(&b));
        // Shares 52 with b (50 in whole chunks), 65 with a (60): a wins.
        let q = [system.clone(), ids(25, 1000), ids(5, 9000)].concat();
        let (n, cache) = c.lookup(&q).unwrap().unwrap();
        assert_eq!(n, 60);
        assert_eq!(cache.len(), 60);
        assert_eq!(
            cache.key_values(),
            q[..60].iter().map(|&t| t as f32).collect::<Vec<_>>()
        );
        // The whole prompt kept (65 tokens): its chunks short of its last token.
        assert_eq!(c.lookup(&a).unwrap().unwrap().0, 60);
        let a60 = a[..60].to_vec();
        assert_eq!(
            c.lookup(&a60).unwrap().unwrap().0,
            50,
            "one token left to read"
        );
        // Less than a chunk in common, or nothing.
        let short = [ids(9, 0), ids(30, 7000)].concat();
        assert!(c.lookup(&short).unwrap().is_none());
        assert!(c.lookup(&ids(30, 7000)).unwrap().is_none());
    }

    #[test]
    fn the_bound_holds_and_the_least_recently_used_go_first() {
        let per_prompt = kv(&ids(50, 0)).bytes();
        let mut c = PrefixCache::new(per_prompt * 2, 10);
        let p: Vec<Vec<u32>> = (0..3).map(|i| ids(50, i * 1000)).collect();
        c.insert(&p[0], &kv(&p[0]));
        c.insert(&p[1], &kv(&p[1]));
        assert_eq!(c.bytes(), per_prompt * 2);
        // p[0] used again: p[1] is now the least recently used and makes room for p[2].
        assert!(c.lookup(&p[0]).unwrap().is_some());
        c.insert(&p[2], &kv(&p[2]));
        assert_eq!(c.bytes(), per_prompt * 2);
        assert!(c.lookup(&p[0]).unwrap().is_some());
        assert!(c.lookup(&p[1]).unwrap().is_none());
        assert!(c.lookup(&p[2]).unwrap().is_some());
        // A prompt larger than the whole bound is not kept, and evicts nothing.
        let big = ids(200, 50_000);
        c.insert(&big, &kv(&big));
        assert!(c.lookup(&big).unwrap().is_none());
        assert_eq!(c.bytes(), per_prompt * 2);
    }

    #[test]
    fn a_prompt_and_its_extension_are_kept_once() {
        let mut c = PrefixCache::new(1 << 20, 10);
        let short = ids(30, 0);
        let long = ids(60, 0);
        c.insert(&short, &kv(&short));
        c.insert(&long, &kv(&long));
        assert_eq!(
            c.bytes(),
            kv(&long).bytes(),
            "the longer replaces the shorter"
        );
        c.insert(&short, &kv(&short));
        assert_eq!(c.bytes(), kv(&long).bytes(), "the shorter adds nothing");
        assert_eq!(c.lookup(&short).unwrap().unwrap().0, 20);
    }
}
