//! Prints a digest of the exact bits `matrixmultiply` produces for conv-shaped products with
//! alpha = 1 and beta ∈ {0, 1} (how segdistill calls it). Run once as built and once with its
//! kernels restricted at build time, e.g. `MMTEST_FEATURE=avx2,fma cargo run --release --bin
//! kernel_paths`: equal digests mean the AVX-512 and AVX2+FMA kernels round identically.

fn main() {
    let shapes = [(16, 27, 16384), (72, 16, 4096), (24, 4096, 72), (128, 1440, 4096), (576, 128, 256), (33, 700, 61)];
    let mut digest: u64 = 0xcbf29ce484222325;
    let fill = |len: usize, seed: u32| -> Vec<f32> {
        (0..len).map(|i| ((i as u32).wrapping_mul(2654435761).wrapping_add(seed) >> 8) as f32 / 16777216.0 - 0.5).collect()
    };
    for &(m, k, n) in &shapes {
        let (a, b) = (fill(m * k, 1), fill(k * n, 2));
        let mut c = fill(m * n, 3);
        for beta in [0.0f32, 1.0] {
            // SAFETY: a is m×k, b is k×n, c is m×n, all row-major and sized so.
            unsafe {
                matrixmultiply::sgemm(m, k, n, 1.0, a.as_ptr(), k as isize, 1, b.as_ptr(), n as isize, 1, beta, c.as_mut_ptr(), n as isize, 1);
            }
            for v in &c {
                digest = (digest ^ v.to_bits() as u64).wrapping_mul(0x100000001b3);
            }
        }
    }
    println!("MMTEST_FEATURE={:?} digest {digest:016x}", option_env!("MMTEST_FEATURE"));
}
