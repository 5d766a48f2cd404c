//! The machine's f32 FMA peak: independent fused multiply-add chains held in registers, one per
//! thread on `--threads N` threads (default 1), AVX-512F when the CPU has it, else AVX2+FMA.
//! Prints GFLOP/s (2 flops per lane per FMA). The figure the convolutions' speed is held against.

use std::time::Instant;

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn chains_avx512(iters: u64) -> f32 {
    use std::arch::x86_64::*;
    let mut acc = [_mm512_set1_ps(0.0); 16];
    let (a, b) = (_mm512_set1_ps(0.999_999), _mm512_set1_ps(1e-7));
    for _ in 0..iters {
        for r in acc.iter_mut() {
            *r = _mm512_fmadd_ps(*r, a, b);
        }
    }
    acc.iter().map(|r| _mm512_reduce_add_ps(*r)).sum()
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn chains_avx2(iters: u64) -> f32 {
    use std::arch::x86_64::*;
    let mut acc = [_mm256_set1_ps(0.0); 12];
    let (a, b) = (_mm256_set1_ps(0.999_999), _mm256_set1_ps(1e-7));
    for _ in 0..iters {
        for r in acc.iter_mut() {
            *r = _mm256_fmadd_ps(*r, a, b);
        }
    }
    let mut out = [0f32; 8];
    let mut s = 0.0;
    for r in acc {
        unsafe { _mm256_storeu_ps(out.as_mut_ptr(), r) };
        s += out.iter().sum::<f32>();
    }
    s
}

/// Flops of one call with `iters` iterations, and the call.
fn kernel() -> (&'static str, f64, fn(u64) -> f32) {
    if std::arch::is_x86_feature_detected!("avx512f") {
        // SAFETY: the feature was detected.
        ("AVX-512F", 16.0 * 16.0 * 2.0, |n| unsafe { chains_avx512(n) })
    } else {
        ("AVX2+FMA", 12.0 * 8.0 * 2.0, |n| unsafe { chains_avx2(n) })
    }
}

fn main() {
    let threads: usize = std::env::args().skip_while(|a| a != "--threads").nth(1).and_then(|v| v.parse().ok()).unwrap_or(1);
    let (name, flops_per_iter, f) = kernel();
    let iters = 200_000_000u64 / 16;
    let mut best = 0f64;
    for _ in 0..5 {
        let t0 = Instant::now();
        let sink: f32 = std::thread::scope(|s| {
            let hs: Vec<_> = (0..threads).map(|_| s.spawn(move || f(iters))).collect();
            hs.into_iter().map(|h| h.join().unwrap()).sum()
        });
        let secs = t0.elapsed().as_secs_f64();
        std::hint::black_box(sink);
        best = best.max(flops_per_iter * iters as f64 * threads as f64 / secs / 1e9);
    }
    println!("{name} FMA peak on {threads} thread(s): {best:.1} GFLOP/s (best of 5)");
}
