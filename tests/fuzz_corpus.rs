//! The option-file fuzz target's body (`fuzz/fuzz_targets/option_file.rs`) run over its fixed
//! corpus and then over seeded mutations of it for a fixed time, so CI fuzzes on stable Rust
//! without cargo-fuzz. A panic fails the test; so would a hang (the test would time out).
#![allow(clippy::unwrap_used)] // a test fails by panicking
#![allow(clippy::too_many_lines)] // a test reads as the operator's story, top to bottom

use std::path::Path;
use std::time::{Duration, Instant};

use shardctl::config::optionfile::fuzz_one;

/// Tokens that steer mutations towards the parser's interesting paths.
const TOKENS: &[&[u8]] = &[
    b"[client]",
    b"[shardctl]\n",
    b"!include ",
    b"!includedir ",
    b"a.cnf\n",
    b"self.cnf\n",
    b"/d\n",
    b"password=",
    b"\"",
    b"'",
    b"\\",
    b"#",
    b"=",
    b"\n",
    b"\r\n",
    b"-",
    b"\xff",
];

/// xorshift64*: deterministic, so a failure reproduces from the seed printed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn mutate(rng: &mut Rng, input: &mut Vec<u8>) {
    for _ in 0..1 + rng.below(4) {
        let at = rng.below(input.len() + 1);
        match rng.below(5) {
            0 if !input.is_empty() => {
                let i = rng.below(input.len());
                input[i] ^= 1 << rng.below(8);
            }
            1 if !input.is_empty() => {
                let end = (at + 1 + rng.below(8)).min(input.len());
                input.drain(at.min(end)..end);
            }
            2 => input.insert(at, rng.next() as u8),
            3 => {
                let t = TOKENS[rng.below(TOKENS.len())];
                input.splice(at..at, t.iter().copied());
            }
            _ => input.truncate(at),
        }
    }
}

#[test]
fn option_file_parser_survives_its_corpus_and_mutations() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/option_file");
    let mut corpus: Vec<Vec<u8>> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| std::fs::read(e.unwrap().path()).unwrap())
        .collect();
    assert!(corpus.len() >= 10, "the corpus in {dir:?} is missing");
    corpus.sort();
    for seed in &corpus {
        let _ = fuzz_one(seed);
    }
    // The seeds that must parse do, so the mutations start from meaningful files.
    assert!(corpus.iter().filter(|s| fuzz_one(s).is_ok()).count() >= 4);

    let budget = Duration::from_secs(3);
    let start = Instant::now();
    let mut rng = Rng(0x5eed_0fc0_ffee);
    let mut runs = 0u64;
    while start.elapsed() < budget {
        let mut input = corpus[rng.below(corpus.len())].clone();
        mutate(&mut rng, &mut input);
        let _ = fuzz_one(&input);
        runs += 1;
    }
    assert!(runs > 1_000, "only {runs} inputs in {budget:?}");
}
