//! Mutation fuzzing of every decoder of user files: JPEG and PNG images, label masks, split lists,
//! `torch.save` files (zip and legacy), safetensors, teacher-cache entries, `config.json`,
//! checkpoints (with their JSON state), the app's saved settings, and a run folder's `metrics.csv`
//! and `best_images.json`.
//!
//! Each target starts from real samples (`tests/fixtures`, or files the crate's own writers produce
//! from real data), mutates them (bit flips, interesting bytes, truncation, junk, chunk
//! duplication / deletion / splicing, huge length fields, numeric tokens in text) and feeds them
//! to the real decoder inside `catch_unwind`. Errors are the expected outcome; these are findings:
//! * a panic (a crash);
//! * a single allocation above `SEGDISTILL_FUZZ_MAX_ALLOC` bytes (1 GiB): decoders must refuse
//!   absurd sizes before allocating. Up to `SEGDISTILL_FUZZ_HARD_ALLOC` (2 GiB; the long campaign
//!   raises it to 4.25 GiB, what a u32 length field can ask, under `ulimit -v`) the allocation is
//!   granted, so the campaign goes on; above it, it is refused, and a decoder that cannot take the
//!   refusal aborts the process, after the input is saved;
//! * an input running longer than `SEGDISTILL_FUZZ_HANG_SECS` (60 s): saved, then the process aborts.
//!
//! Inputs taking over 2 s are reported as slow (not a failure). Findings are saved under
//! `target/fuzz-crashes/` (slow inputs under `target/fuzz-slow/`) with a `.txt` beside each
//! (message, location, backtrace); replay one with
//! `SEGDISTILL_FUZZ_REPLAY=<file> SEGDISTILL_FUZZ_TARGET=<target> cargo test --locked --test fuzz`.
//!
//! Environment: `SEGDISTILL_FUZZ_SECS` (per target; default 1, the CI smoke), `SEGDISTILL_FUZZ_TARGET`
//! (one target, or several separated by commas), `SEGDISTILL_FUZZ_SEED` (default 1). Every input
//! is a function of (seed, target, input number), so a run can be repeated exactly. The long
//! campaign and its figures are in `docs/reliability.md`.

#[path = "../common/mod.rs"]
mod common;
mod guards;
mod mutate;
mod targets;
mod torch_pickle;

use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use guards::{
    CURRENT, Current, DECODING, LAST_PANIC, MAX_ALLOC, OVERSIZE_NOTED, OVERSIZED, OVERSIZED_SIZE, OVERSIZED_TRACE,
    SERIAL, env_parse, install_guards,
};
use mutate::{Rng, fnv, mutate};
use targets::{Decode, NamedTarget, Seed, TARGETS, Target};

/// Something a decoder must never do, with how often it happened and the first input that did it.
#[derive(Debug)]
struct Finding {
    target: &'static str,
    /// `panicked at <file:line:col>: <message>`, or the allocation refused.
    what: String,
    count: u64,
    first: String,
    input: PathBuf,
}

/// Inputs saved per kind of finding (the rest are only counted).
const SAVED_PER_FINDING: u64 = 3;

struct Stats {
    inputs: u64,
    secs: f64,
    findings: Vec<Finding>,
    /// Inputs over [`SLOW`].
    slow: u64,
    slowest: Duration,
    slowest_input: String,
    /// Error messages that do not name the file, or that carry control characters (raw bytes of
    /// the input): counted and shown, not failed.
    unnamed: Tally,
    raw: Tally,
}

/// How many, and the first.
#[derive(Default)]
struct Tally {
    count: u64,
    first: Option<String>,
}

impl Tally {
    fn add(&mut self, example: &str) {
        self.count += 1;
        self.first.get_or_insert_with(|| example.to_string());
    }
}

/// Reported, not failed.
const SLOW: Duration = Duration::from_secs(2);

fn target_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).parent().map_or_else(|| PathBuf::from("target"), Path::to_path_buf)
}

/// Decodes each seed as it is (it must succeed: a fuzzer starting from unreadable samples only
/// tests the first error path), then mutated inputs for `budget`.
fn run_target(target: &Target, budget: Duration, seed: u64, crash_dir: &Path) -> Stats {
    for s in &target.seeds {
        if let Err(e) = (target.decode)(&s.bytes) {
            panic!("{}: the unmutated seed `{}` does not decode: {e}", target.name, s.name);
        }
    }
    std::fs::create_dir_all(crash_dir).expect("crash folder");
    let others: Vec<Arc<Vec<u8>>> = target.seeds.iter().map(|s| s.bytes.clone()).collect();
    let total_weight: usize = target.seeds.iter().map(|s| s.weight).sum();
    let mut stats = Stats {
        inputs: 0,
        secs: 0.0,
        findings: Vec::new(),
        slow: 0,
        slowest: Duration::ZERO,
        slowest_input: String::new(),
        unnamed: Tally::default(),
        raw: Tally::default(),
    };
    let mut resolved = 0;
    let oversized_file = crash_dir.join(format!("{}-last-oversized.bin", target.name));
    OVERSIZE_NOTED.store(false, Ordering::SeqCst);
    let start = Instant::now();
    while start.elapsed() < budget {
        let n = stats.inputs;
        let mut rng = Rng::new(seed ^ fnv(target.name) ^ n.wrapping_mul(0xD6E8_FEB8_6659_FD93));
        let mut pick = rng.below(total_weight);
        let s = target
            .seeds
            .iter()
            .find(|s| {
                let hit = pick < s.weight;
                pick = pick.saturating_sub(s.weight);
                hit
            })
            .expect("a seed");
        let mut data = s.bytes.to_vec();
        mutate(&mut data, &mut rng, &others);
        let input = Arc::new(data);
        let label = format!("{} input #{n} (seed {seed}, from `{}`)", target.name, s.name);
        *CURRENT.lock().expect("current input") = Some(Current {
            input: input.clone(),
            since: Instant::now(),
            oversized_file: oversized_file.clone(),
            label: label.clone(),
        });
        let oversized_before = OVERSIZED.load(Ordering::SeqCst);
        let t0 = Instant::now();
        DECODING.set(true);
        let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| (target.decode)(&input)));
        DECODING.set(false);
        let took = t0.elapsed();
        *CURRENT.lock().expect("current input") = None;
        stats.inputs += 1;
        if took > stats.slowest {
            stats.slowest = took;
            stats.slowest_input = label.clone();
        }
        if took > SLOW {
            stats.slow += 1;
            let dir = target_dir().join("fuzz-slow");
            std::fs::create_dir_all(&dir).ok(); // best effort: the line below reports it anyway
            let file = dir.join(format!("{}-seed{seed}-{n}.bin", target.name));
            std::fs::write(&file, input.as_slice()).ok();
            eprintln!("fuzz: {label} took {:.1} s (saved as {})", took.as_secs_f64(), file.display());
        }
        if let Ok(Err(message)) = &outcome {
            if target.file_name.is_some_and(|f| !message.contains(f)) {
                stats.unnamed.add(message);
            }
            if message.chars().any(|c| c.is_control() && c != '\n') {
                stats.raw.add(message);
            }
        }
        let mut found = Vec::new();
        if OVERSIZED.load(Ordering::SeqCst) != oversized_before {
            let size = OVERSIZED_SIZE.load(Ordering::SeqCst);
            let cap = MAX_ALLOC.load(Ordering::Relaxed);
            let trace = OVERSIZED_TRACE.lock().ok().and_then(|mut t| t.take());
            // Resolving a backtrace is slow: only the first few hundred name their place.
            let site = match &trace {
                Some(t) if resolved < 300 => {
                    resolved += 1;
                    site_of(t)
                }
                _ => "(not resolved)".into(),
            };
            found.push((
                format!("allocated more than the cap ({cap} bytes) at once at {site}, {size} bytes the last time"),
                trace,
            ));
        }
        if outcome.is_err() {
            let note = LAST_PANIC.with(|p| p.borrow_mut().take());
            let what = note.as_ref().map_or("panicked (no message)".into(), |p| {
                // A panic inside the standard library (capacity overflow…) is named by its caller.
                let place = if p.location.starts_with("/rustc/") { site_of(&p.backtrace) } else { p.location.clone() };
                format!("panicked at {place}: {}", p.message)
            });
            found.push((what, note.map(|p| p.backtrace)));
        }
        for (what, note) in found {
            // Findings with the same place (and message) are one finding.
            let key = what.split(", ").next().unwrap_or(&what).to_string();
            let finding = stats.findings.iter_mut().find(|f| f.what.split(", ").next() == Some(key.as_str()));
            let count = finding.as_ref().map_or(0, |f| f.count);
            let file = crash_dir.join(format!("{}-seed{seed}-{n}.bin", target.name));
            if count < SAVED_PER_FINDING {
                std::fs::write(&file, input.as_slice()).expect("the input of a finding is saved");
                let backtrace = note.as_ref().map_or(String::new(), ToString::to_string);
                let text = format!("{label}\n{what}\n\n{backtrace}");
                std::fs::write(file.with_extension("txt"), text).ok(); // best effort: the .bin is what matters
                eprintln!("fuzz: FOUND {label}: {what} (input saved as {})", file.display());
            }
            match finding {
                Some(f) => f.count += 1,
                None => stats.findings.push(Finding {
                    target: target.name,
                    what,
                    count: 1,
                    first: label.clone(),
                    input: file,
                }),
            }
        }
    }
    stats.secs = start.elapsed().as_secs_f64();
    stats
}

/// The first place in a backtrace outside the standard library and this harness.
fn site_of(trace: &std::backtrace::Backtrace) -> String {
    let text = trace.to_string();
    let place = text
        .lines()
        .filter_map(|l| l.trim().strip_prefix("at "))
        .find(|l| !l.starts_with("/rustc/") && !l.contains("/library/") && !l.contains("tests/fuzz/"));
    place.unwrap_or("?").to_string()
}

fn selected() -> Vec<NamedTarget> {
    let Ok(names) = std::env::var("SEGDISTILL_FUZZ_TARGET") else { return TARGETS.to_vec() };
    let wanted: Vec<&str> = names.split(',').map(str::trim).filter(|n| !n.is_empty()).collect();
    for w in &wanted {
        assert!(
            TARGETS.iter().any(|(n, _)| n == w),
            "SEGDISTILL_FUZZ_TARGET: no target `{w}`; targets: {}",
            TARGETS.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ")
        );
    }
    TARGETS.iter().filter(|(n, _)| wanted.contains(n)).copied().collect()
}

/// Decodes one saved input without catching anything: the panic prints with its backtrace.
fn replay(file: &Path) {
    let input = std::fs::read(file).unwrap_or_else(|e| panic!("SEGDISTILL_FUZZ_REPLAY {}: {e}", file.display()));
    for (name, build) in selected() {
        let target = build();
        let result = (target.decode)(&input);
        eprintln!("replay {} on {name}: {result:?}", file.display());
    }
}

/// The fuzz campaign (the CI smoke by default): every target, each for `SEGDISTILL_FUZZ_SECS`.
#[test]
fn decoders_survive_mutated_inputs() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(file) = std::env::var_os("SEGDISTILL_FUZZ_REPLAY") {
        replay(Path::new(&file));
        return;
    }
    install_guards();
    let secs: f64 = env_parse("SEGDISTILL_FUZZ_SECS").unwrap_or(1.0);
    let seed: u64 = env_parse("SEGDISTILL_FUZZ_SEED").unwrap_or(1);
    let crash_dir = target_dir().join("fuzz-crashes");
    let mut findings = Vec::new();
    let mut total = 0;
    for (name, build) in selected() {
        let t0 = Instant::now();
        let target = build();
        let setup = t0.elapsed().as_secs_f64();
        let stats = run_target(&target, Duration::from_secs_f64(secs), seed, &crash_dir);
        eprintln!(
            "fuzz {name}: {} inputs in {:.1} s ({:.0}/s; setup {setup:.1} s), {} findings, {} slow (> {} s), \
             slowest {:.3} s ({})",
            stats.inputs,
            stats.secs,
            stats.inputs as f64 / stats.secs.max(1e-9),
            stats.findings.iter().map(|f| f.count).sum::<u64>(),
            stats.slow,
            SLOW.as_secs(),
            stats.slowest.as_secs_f64(),
            stats.slowest_input,
        );
        for (what, tally) in
            [("errors not naming the file", &stats.unnamed), ("errors with control characters", &stats.raw)]
        {
            if let Some(first) = &tally.first {
                eprintln!("fuzz {name}: {} {what}, e.g. {first:?}", tally.count);
            }
        }
        total += stats.inputs;
        findings.extend(stats.findings);
    }
    eprintln!("fuzz: {total} inputs in all, seed {seed}, {secs} s per target");
    let list: Vec<String> = findings
        .iter()
        .map(|f| format!("{}: {}× {} (first: {}, saved as {})", f.target, f.count, f.what, f.first, f.input.display()))
        .collect();
    assert!(findings.is_empty(), "{} findings:\n{}", findings.len(), list.join("\n"));
}

/// The harness itself: a decoder that panics, one that asks for an absurd allocation, and one
/// that is slow are all caught (a fuzzer that cannot fail would be a defect).
#[test]
fn the_harness_catches_panics_and_absurd_allocations() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    install_guards();
    let dir = tempfile::tempdir().unwrap();
    let seed_bytes: Vec<u8> = (0..200u8).collect();
    let target = |name: &'static str, decode: Decode| Target {
        name,
        file_name: None,
        seeds: vec![Seed::new("counting bytes", seed_bytes.clone(), 1)],
        decode,
        _scratch: None,
    };
    // Panics on any change of length, as a decoder trusting a length field would.
    let panicky = target(
        "panicky",
        Box::new(|b: &[u8]| {
            assert_eq!(b.len(), 200, "the length field disagrees");
            Ok(())
        }),
    );
    // Budgets are short and the machine may be busy: every check below holds from the first input
    // on (seed 7's first input is shorter, and every input differs from the seed).
    let stats = run_target(&panicky, Duration::from_millis(300), 7, dir.path());
    let crash = stats.findings.first().expect("length changes must be found");
    assert!(crash.what.contains("panicked at") && crash.what.contains(file!()), "{}", crash.what);
    assert_ne!(std::fs::read(&crash.input).unwrap().len(), 200, "the saved input is the crashing one");

    // Believes a damaged file announces a terabyte.
    let seed_copy = seed_bytes.clone();
    let greedy = target(
        "greedy",
        Box::new(move |b: &[u8]| {
            let want = if b == seed_copy.as_slice() { 0 } else { 1 << 40 }; // over the hard cap
            let mut v: Vec<u8> = Vec::new();
            v.try_reserve_exact(want).map_err(|e| e.to_string())
        }),
    );
    let stats = run_target(&greedy, Duration::from_millis(100), 7, dir.path());
    let f = stats.findings.first().expect("a refused allocation is a finding");
    assert!(f.what.contains("more than the cap"), "{}", f.what);
    assert!(f.input.is_file(), "the input behind the allocation is saved: {}", f.input.display());

    // A well-behaved decoder: nothing found.
    let fine = target("fine", Box::new(|b: &[u8]| if b.len() == 200 { Ok(()) } else { Err("wrong length".into()) }));
    let stats = run_target(&fine, Duration::from_millis(100), 7, dir.path());
    assert!(stats.findings.is_empty() && stats.inputs > 0, "{} inputs, {:?}", stats.inputs, stats.findings);
}

/// Mutations are a function of the seed: a run can be repeated input by input.
#[test]
fn mutations_are_reproducible_and_varied() {
    let seed: Vec<u8> = (0..=255u8).cycle().take(300_000).collect();
    let others = vec![Arc::new(b"{\"a\": 12}".to_vec())];
    let run = |s: u64| {
        let mut rng = Rng::new(s);
        let mut d = seed.clone();
        mutate(&mut d, &mut rng, &others);
        d
    };
    assert_eq!(run(5), run(5));
    let distinct: std::collections::HashSet<Vec<u8>> = (0..200).map(run).collect();
    assert!(distinct.len() > 190, "{} distinct inputs of 200", distinct.len());
    let lengths: std::collections::HashSet<usize> = (0..200).map(|s| run(s).len()).collect();
    assert!(lengths.len() > 20, "truncation, insertion and deletion change lengths");
}
