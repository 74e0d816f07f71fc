//! Generator-driven fuzzing of the request path (body → AdmissionReview → decision →
//! answer) on stable Rust with nothing but cargo. RELIABILITY.md, "Fuzzing".
//!
//! ```sh
//! cargo run --release --example fuzz_admission -- --runs 1000000 --seed 1
//! cargo run --release --example fuzz_admission -- --runs 200000 --save /tmp/found
//! ```
//!
//! Each input is a structure-aware mutation ([`fuzz::mutate`]) of the seeds (the
//! review fixtures and the corpus in `tests/fixtures/fuzz/`) or of an earlier input
//! that showed new behaviour (a new outcome or error text). Every input runs through
//! [`Checker::check`] (the real [`Admission::review`] under `warn` and `deny`, with
//! its invariants) and:
//! - a panic is caught (`catch_unwind`), reported, and the input saved;
//! - a watchdog thread aborts the run when one input takes longer than `--time-limit`
//!   (a hang), naming the iteration to reproduce it (`--seed S --runs N+1`);
//! - a counting global allocator measures the peak bytes each input allocates,
//!   checked against [`fuzz::allocation_bound`] (linear in the input).
//!
//! Inputs are at most `--max-len` (64 KiB); every `--huge-every`-th input may grow to
//! 8 MiB (above the 7 MiB the HTTP layer lets through). Exit status 1 on any failure.
//!
//! [`Admission::review`]: fleet_delete_guard::admission::Admission::review

use std::{
    collections::{BTreeMap, HashSet},
    panic::{catch_unwind, AssertUnwindSafe},
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

#[path = "../tests/support/fuzz.rs"]
mod fuzz;

use fuzz::{Checker, CountingAlloc, Rng};

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

const HUGE_LEN: usize = 8 * 1024 * 1024;
const POOL_MAX: usize = 4096;

struct Args {
    runs: u64,
    seed: u64,
    max_len: usize,
    huge_every: u64,
    time_limit: Duration,
    save: Option<PathBuf>,
    replay: Vec<PathBuf>,
}

fn args() -> Args {
    let mut args = Args {
        runs: 1_000_000,
        seed: 1,
        max_len: 64 * 1024,
        huge_every: 2_000,
        time_limit: Duration::from_secs(10),
        save: None,
        replay: Vec::new(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || {
            it.next()
                .unwrap_or_else(|| usage(&format!("{flag} needs a value")))
        };
        let number = |v: String| -> u64 {
            v.replace('_', "")
                .parse()
                .unwrap_or_else(|_| usage(&format!("{v:?} is not a number")))
        };
        match flag.as_str() {
            "--runs" => args.runs = number(value()),
            "--seed" => args.seed = number(value()),
            "--max-len" => args.max_len = number(value()) as usize,
            "--huge-every" => args.huge_every = number(value()).max(1),
            "--time-limit" => args.time_limit = Duration::from_secs(number(value())),
            "--save" => args.save = Some(PathBuf::from(value())),
            "--replay" => args.replay.push(PathBuf::from(value())),
            "-h" | "--help" => usage(""),
            other => usage(&format!("unknown argument {other}")),
        }
    }
    args
}

fn usage(problem: &str) -> ! {
    eprintln!(
        "{problem}\nusage: fuzz_admission [--runs N] [--seed N] [--max-len BYTES] [--huge-every N] \
         [--time-limit SECS] [--save DIR] [--replay FILE]..."
    );
    std::process::exit(2)
}

/// The review fixtures and the regression corpus.
fn seeds() -> Vec<Vec<u8>> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let mut files: Vec<PathBuf> = [
        "admissionreview-delete-configmap.json",
        "admissionreview-delete-by-fleet-agent.json",
    ]
    .iter()
    .map(|f| root.join(f))
    .collect();
    if let Ok(dir) = std::fs::read_dir(root.join("fuzz")) {
        let mut corpus: Vec<PathBuf> = dir.filter_map(|e| e.ok().map(|e| e.path())).collect();
        corpus.sort();
        files.extend(corpus);
    }
    files
        .iter()
        .filter_map(|f| std::fs::read(f).ok())
        // Keep the big generated-only cases out of the seed pool: mutations grow them.
        .filter(|b| b.len() <= 256 * 1024)
        .collect()
}

/// What counts as "new behaviour": the outcome and the error text with numbers (line,
/// column) and quoted values (an echoed `kind` or `apiVersion`) blanked.
fn signature(outcome: &str, text: &str) -> String {
    let mut out = String::with_capacity(text.len().min(160));
    let mut quoted = false;
    for c in text.chars().take(160) {
        match c {
            '"' => {
                quoted = !quoted;
                out.push('"');
            }
            _ if quoted => {}
            c if c.is_ascii_digit() => out.push('#'),
            c => out.push(c),
        }
    }
    format!("{outcome}|{out}")
}

fn save(dir: &Option<PathBuf>, name: &str, input: &[u8]) {
    if let Some(dir) = dir {
        let _ = std::fs::create_dir_all(dir);
        let _ = std::fs::write(dir.join(name), input);
    }
}

/// `--replay FILE`: outcome, text, best time of 20 and peak allocation of each file.
fn replay(files: &[PathBuf]) {
    let checker = Checker::new();
    for file in files {
        let input =
            std::fs::read(file).unwrap_or_else(|e| usage(&format!("{}: {e}", file.display())));
        let mut best = Duration::MAX;
        let mut result = None;
        let base = fuzz::start_measuring();
        for _ in 0..20 {
            let t0 = Instant::now();
            result = Some(catch_unwind(AssertUnwindSafe(|| {
                checker.check_detailed(&input)
            })));
            best = best.min(t0.elapsed());
        }
        let peak = fuzz::peak_since(base);
        match result {
            Some(Ok((outcome, text))) => println!(
                "{}: {outcome} {text:?} — {} bytes, best {best:?}, peak allocation {peak} bytes",
                file.display(),
                input.len()
            ),
            _ => println!("{}: PANIC", file.display()),
        }
    }
}

fn main() {
    let args = args();
    if !args.replay.is_empty() {
        replay(&args.replay);
        return;
    }
    let seeds = seeds();
    assert!(!seeds.is_empty(), "no seeds found under tests/fixtures");
    let checker = Checker::new();
    let mut rng = Rng::new(args.seed);
    let mut pool: Vec<Vec<u8>> = seeds.clone();
    let mut seen: HashSet<String> = HashSet::new();
    let mut outcomes: BTreeMap<String, u64> = BTreeMap::new();
    let mut failures = 0u64;
    let mut slowest = (Duration::ZERO, 0usize);
    let mut worst_alloc = (0.0f64, 0usize, 0usize);
    let mut largest = 0usize;
    let mut bytes_total = 0u64;

    // Watchdog: `current` holds the iteration's start (µs since `epoch`) + 1, 0 when idle.
    let epoch = Instant::now();
    let current = Arc::new(AtomicU64::new(0));
    let iteration = Arc::new(AtomicU64::new(0));
    // A copy of the input being checked, for the watchdog to save.
    let running: Arc<Mutex<Vec<u8>>> = Arc::default();
    {
        let (current, iteration, limit, seed) = (
            current.clone(),
            iteration.clone(),
            args.time_limit,
            args.seed,
        );
        let (running, save_dir) = (running.clone(), args.save.clone());
        std::thread::spawn(move || loop {
            std::thread::sleep(Duration::from_millis(50));
            let started = current.load(Ordering::Relaxed);
            if started == 0 {
                continue;
            }
            let now = epoch.elapsed().as_micros() as u64 + 1;
            if now.saturating_sub(started) > limit.as_micros() as u64 {
                let i = iteration.load(Ordering::Relaxed);
                eprintln!(
                    "HANG: input #{i} has run for more than {limit:?}; reproduce with --seed {seed} --runs {} --save DIR",
                    i + 1
                );
                if let Ok(input) = running.try_lock() {
                    save(&save_dir, &format!("hang-{i}.json"), &input);
                }
                std::process::abort();
            }
        });
    }

    println!(
        "fuzz_admission: {} runs, seed {}, {} seeds, max-len {} (8 MiB every {}th), time limit {:?}",
        args.runs,
        args.seed,
        seeds.len(),
        args.max_len,
        args.huge_every,
        args.time_limit
    );
    let started = Instant::now();
    for i in 0..args.runs {
        let parent = if rng.one_in(2) {
            &seeds[rng.below(seeds.len())]
        } else {
            &pool[rng.below(pool.len())]
        };
        let max_len = if i % args.huge_every == args.huge_every - 1 {
            HUGE_LEN
        } else {
            args.max_len
        };
        let input = fuzz::mutate(parent, &seeds, &mut rng, max_len);
        largest = largest.max(input.len());
        bytes_total += input.len() as u64;

        running
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone_from(&input);
        iteration.store(i, Ordering::Relaxed);
        current.store(epoch.elapsed().as_micros() as u64 + 1, Ordering::Relaxed);
        let base = fuzz::start_measuring();
        let t0 = Instant::now();
        let result = catch_unwind(AssertUnwindSafe(|| checker.check_detailed(&input)));
        let took = t0.elapsed();
        let peak = fuzz::peak_since(base);
        current.store(0, Ordering::Relaxed);

        if took > slowest.0 {
            slowest = (took, input.len());
            if took > Duration::from_millis(10) {
                save(&args.save, &format!("slow-{i}.json"), &input);
            }
        }
        let ratio = peak as f64 / input.len().max(1) as f64;
        if peak > (1 << 16) && ratio > worst_alloc.0 {
            worst_alloc = (ratio, peak, input.len());
        }
        if peak > fuzz::allocation_bound(input.len()) {
            failures += 1;
            eprintln!(
                "ALLOCATION: input #{i} ({} bytes) allocated {peak} bytes at peak (bound {})",
                input.len(),
                fuzz::allocation_bound(input.len())
            );
            save(&args.save, &format!("alloc-{i}.json"), &input);
        }
        match result {
            Ok((outcome, text)) => {
                let label = outcome.label();
                *outcomes.entry(label.clone()).or_default() += 1;
                if seen.insert(signature(&label, &text)) {
                    save(&args.save, &format!("{label}--{i}.json"), &input);
                    if input.len() <= args.max_len {
                        if pool.len() < POOL_MAX {
                            pool.push(input);
                        } else {
                            let at = rng.below(POOL_MAX);
                            pool[at] = input;
                        }
                    }
                }
            }
            Err(_) => {
                failures += 1;
                eprintln!(
                    "PANIC: input #{i} ({} bytes), saved as panic-{i}.json",
                    input.len()
                );
                save(&args.save, &format!("panic-{i}.json"), &input);
            }
        }
        if (i + 1) % 100_000 == 0 {
            println!(
                "  {:>9} runs  {:>6.1} s  {:>7.0}/s  {} behaviours  {} failures",
                i + 1,
                started.elapsed().as_secs_f64(),
                (i + 1) as f64 / started.elapsed().as_secs_f64(),
                seen.len(),
                failures
            );
        }
    }
    let elapsed = started.elapsed();
    println!(
        "done: {} runs in {:.1} s ({:.0}/s), {} distinct behaviours, {} failures",
        args.runs,
        elapsed.as_secs_f64(),
        args.runs as f64 / elapsed.as_secs_f64(),
        seen.len(),
        failures
    );
    println!(
        "inputs: {:.0} bytes on average, largest {largest}; slowest input {:?} ({} bytes); \
         highest allocation {:.1}× its input ({} bytes for {} bytes; bound 8× + 1 MiB)",
        bytes_total as f64 / args.runs.max(1) as f64,
        slowest.0,
        slowest.1,
        worst_alloc.0,
        worst_alloc.1,
        worst_alloc.2
    );
    println!("outcomes (warn policy):");
    for (label, n) in &outcomes {
        println!("  {label:<36} {n:>9}");
    }
    if failures > 0 {
        std::process::exit(1);
    }
}
