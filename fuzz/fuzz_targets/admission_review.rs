//! libFuzzer target: any bytes as a `POST /validate` body, through the real admission
//! path under `warn` and `deny` ([`Checker::check`] panics on a broken invariant),
//! with the allocation bound of `fuzz::allocation_bound` (`tests/support/fuzz.rs`).
//! Half of the mutations are libFuzzer's own, half structure-aware
//! ([`fuzz::mutate`]: wrong types, nulls, huge strings, unicode, deep nesting,
//! duplicated keys, planted secrets, truncations, invalid escapes and bytes).

#![no_main]

use std::{path::Path, sync::OnceLock};

#[path = "../../tests/support/fuzz.rs"]
mod fuzz;

use fuzz::{Checker, CountingAlloc, Rng};
use libfuzzer_sys::{fuzz_mutator, fuzz_target, fuzzer_mutate};

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

fn checker() -> &'static Checker {
    static CHECKER: OnceLock<Checker> = OnceLock::new();
    CHECKER.get_or_init(Checker::new)
}

/// The review fixtures, donors for the structure-aware mutator.
fn seeds() -> &'static [Vec<u8>] {
    static SEEDS: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
    SEEDS.get_or_init(|| {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures");
        [
            "admissionreview-delete-configmap.json",
            "admissionreview-delete-by-fleet-agent.json",
        ]
        .iter()
        .filter_map(|f| std::fs::read(root.join(f)).ok())
        .collect()
    })
}

fuzz_target!(|body: &[u8]| {
    let checker = checker();
    let base = fuzz::start_measuring();
    checker.check(body);
    let peak = fuzz::peak_since(base);
    assert!(
        peak <= fuzz::allocation_bound(body.len()),
        "{peak} bytes allocated at peak for a body of {} bytes",
        body.len()
    );
});

fuzz_mutator!(|data: &mut [u8], size: usize, max_size: usize, seed: u32| {
    let mut rng = Rng::new(u64::from(seed));
    if rng.one_in(2) {
        return fuzzer_mutate(data, size, max_size);
    }
    let out = fuzz::mutate(&data[..size], seeds(), &mut rng, max_size.min(data.len()));
    data[..out.len()].copy_from_slice(&out);
    out.len()
});
