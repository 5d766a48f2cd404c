//! What a training step keeps on the heap, counted by a global allocator: after the backward
//! pass, only the parameters' gradients may remain on top of the forward pass's activations.
//! (A parameter gradient that is a view into an activation-sized buffer kept a second copy of
//! every activation alive until the optimizer step: 97 instead of 50 MiB per training image.)

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use candle_core::{Device, Tensor};
use segdistill::distill::{Target, ce::cross_entropy};
use segdistill::model::{Mode, ModelKind, build_trainable};

/// The system allocator, counting the bytes live.
struct Counting;
static LIVE: AtomicUsize = AtomicUsize::new(0);
/// The most bytes live at once since the last reset.
static PEAK: AtomicUsize = AtomicUsize::new(0);

fn note_peak() {
    PEAK.fetch_max(LIVE.load(Ordering::Relaxed), Ordering::Relaxed);
}

// SAFETY: every call is forwarded to the system allocator unchanged; only a counter is added.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(l) };
        if !p.is_null() {
            LIVE.fetch_add(l.size(), Ordering::Relaxed);
            note_peak();
        }
        p
    }
    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        let p = unsafe { System.alloc_zeroed(l) };
        if !p.is_null() {
            LIVE.fetch_add(l.size(), Ordering::Relaxed);
            note_peak();
        }
        p
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        unsafe { System.dealloc(p, l) };
        LIVE.fetch_sub(l.size(), Ordering::Relaxed);
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

const MIB: f64 = 1048576.0;

/// The counters are process-wide: the tests of this file take turns.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[test]
fn after_backward_only_the_parameter_gradients_remain_besides_the_activations() {
    let _turn = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let dev = Device::Cpu;
    let (b, size) = (2, 128);
    let student = build_trainable(ModelKind::Mbv3sAspp, 21, 0, &dev).unwrap();
    let x = Tensor::randn(0f32, 1.0, (b, 3, size, size), &dev).unwrap();
    let labels: Vec<u8> = (0..b * size * size).map(|i| (i % 21) as u8).collect();
    let target = Target::new(&labels, (b, size, size), None, &dev).unwrap();
    let params: usize = student.varmap.all_vars().iter().map(|v| v.elem_count() * 4).sum();

    let base = LIVE.load(Ordering::Relaxed);
    let out = student.model.forward(&x, Mode::Train { seed: 0, freeze_bn: false }).unwrap();
    let loss = cross_entropy(&out.logits, &target).unwrap();
    let activations = LIVE.load(Ordering::Relaxed) - base;
    let grads = loss.backward().unwrap();
    let kept = LIVE.load(Ordering::Relaxed) - base - activations;
    println!(
        "activations {:.1} MiB, kept after backward {:.1} MiB (parameters {:.1} MiB)",
        activations as f64 / MIB,
        kept as f64 / MIB,
        params as f64 / MIB
    );
    // The parameters' gradients, plus the gradients candle computes for the constant inputs
    // of the graph (the image, the dropout mask): well under a third of the activations.
    assert!(kept < params + activations / 3, "{kept} bytes kept for {activations} of activations");
    drop((grads, loss, out));
}

/// The figure each model states for its training step's memory per pixel (which the trainer
/// uses to refuse batches that cannot fit) is held to a fresh measurement: the growth of the
/// peak of live bytes over a forward and backward pass between two input sizes, per added pixel
/// (so the parameters' gradients, which do not grow with the input, are left out), within a
/// factor of 1.6 either way.
#[test]
fn each_models_stated_step_memory_matches_a_measurement() {
    let _turn = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let dev = Device::Cpu;
    let peak_of_step = |kind: ModelKind, size: usize| {
        let student = build_trainable(kind, 21, 0, &dev).unwrap();
        let x = Tensor::randn(0f32, 1.0, (1, 3, size, size), &dev).unwrap();
        let labels: Vec<u8> = (0..size * size).map(|i| (i % 21) as u8).collect();
        let target = Target::new(&labels, (1, size, size), None, &dev).unwrap();
        let base = LIVE.load(Ordering::Relaxed);
        PEAK.store(base, Ordering::Relaxed);
        let out = student.model.forward(&x, Mode::Train { seed: 0, freeze_bn: false }).unwrap();
        let loss = cross_entropy(&out.logits, &target).unwrap();
        let grads = loss.backward().unwrap();
        let peak = PEAK.load(Ordering::Relaxed) - base;
        drop((grads, loss, out));
        peak as f64
    };
    let (small, large) = (96, 160);
    let mut report = Vec::new();
    for kind in ModelKind::ALL {
        let growth = peak_of_step(kind, large) - peak_of_step(kind, small);
        let measured = growth / (large * large - small * small) as f64;
        let stated = kind.train_step_bytes_per_pixel();
        report.push(format!("{kind}: measured {measured:.0} B/pixel, stated {stated:.0}"));
        assert!(
            measured / 1.6 <= stated && stated <= measured * 1.6,
            "{kind}: a training step grows by {measured:.0} bytes per input pixel, the model states {stated:.0}\n{}",
            report.join("\n")
        );
    }
    println!("{}", report.join("\n"));
}
