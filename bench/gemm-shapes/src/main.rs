//! Single-thread f32 GEMM speed (GFLOP/s) of `gemm` 0.19 (segdistill's today), faer 0.24 (whose
//! x86 kernels are `private-gemm-x86`) and `matrixmultiply` 0.3 on the products segdistill's
//! convolutions make: forward `W (M×K) · cols (K×N)`, weight gradient `dY (M×N) · colsᵀ`, input
//! gradient `Wᵀ · dY`. Shapes: mbv3s-aspp training at 256² (per image) and FCN-ResNet50's
//! forward at 520². Usage: cargo run --release [-- --reps 5]

use std::time::Instant;

/// (name, M = output channels, K = input channels · k², N = output pixels)
const SHAPES: &[(&str, usize, usize, usize)] = &[
    ("mbv3s stem 3x3 3->16 @128^2", 16, 27, 16384),
    ("mbv3s 1x1 16->72 @64^2", 72, 16, 4096),
    ("mbv3s 1x1 72->24 @64^2", 24, 72, 4096),
    ("mbv3s 1x1 96->576 @16^2", 576, 96, 256),
    ("mbv3s aspp 1x1 576->128 @16^2", 128, 576, 256),
    ("mbv3s decoder 3x3 160->128 @64^2", 128, 1440, 4096),
    ("fcn layer1 1x1 64->256 @130^2", 256, 64, 16900),
    ("fcn layer3 3x3 256 d2 @65^2", 256, 2304, 4225),
    ("fcn layer3 1x1 1024->256 @65^2", 256, 1024, 4225),
    ("fcn layer4 3x3 512 d4 @65^2", 512, 4608, 4225),
    ("fcn layer4 1x1 512->2048 @65^2", 2048, 512, 4225),
    ("fcn head 3x3 2048->512 @65^2", 512, 18432, 4225),
];

/// A row-major product `dst (m×n) = a · b` with a and b given by (row stride, column stride).
struct Product<'a> {
    m: usize,
    k: usize,
    n: usize,
    a: (&'a [f32], isize, isize),
    b: (&'a [f32], isize, isize),
}

fn with_gemm(p: &Product, dst: &mut [f32]) {
    unsafe {
        gemm::gemm(
            p.m, p.n, p.k, dst.as_mut_ptr(), 1, p.n as isize, false,
            p.a.0.as_ptr(), p.a.2, p.a.1, p.b.0.as_ptr(), p.b.2, p.b.1,
            1.0, 1.0, false, false, false, gemm::Parallelism::None,
        );
    }
}

fn with_faer(p: &Product, dst: &mut [f32]) {
    use faer::{Accum, MatMut, MatRef, Par};
    let a = unsafe { MatRef::from_raw_parts(p.a.0.as_ptr(), p.m, p.k, p.a.1, p.a.2) };
    let b = unsafe { MatRef::from_raw_parts(p.b.0.as_ptr(), p.k, p.n, p.b.1, p.b.2) };
    let mut c = unsafe { MatMut::from_raw_parts_mut(dst.as_mut_ptr(), p.m, p.n, p.n as isize, 1) };
    faer::linalg::matmul::matmul(&mut c, Accum::Replace, a, b, 1.0f32, Par::Seq);
}

fn with_matrixmultiply(p: &Product, dst: &mut [f32]) {
    unsafe {
        matrixmultiply::sgemm(
            p.m, p.k, p.n, 1.0, p.a.0.as_ptr(), p.a.1, p.a.2, p.b.0.as_ptr(), p.b.1, p.b.2,
            0.0, dst.as_mut_ptr(), p.n as isize, 1,
        );
    }
}

fn gflops(p: &Product, reps: usize, f: &dyn Fn(&Product, &mut [f32])) -> (f64, Vec<f32>) {
    let mut dst = vec![0f32; p.m * p.n];
    f(p, &mut dst); // warm-up (packing buffers, page faults)
    let mut best = f64::INFINITY;
    for _ in 0..reps {
        let t = Instant::now();
        f(p, &mut dst);
        best = best.min(t.elapsed().as_secs_f64());
    }
    (2.0 * (p.m * p.k * p.n) as f64 / best / 1e9, dst)
}

fn main() {
    let reps = std::env::args().skip_while(|a| a != "--reps").nth(1).and_then(|v| v.parse().ok()).unwrap_or(5);
    let fill = |len: usize, seed: u32| -> Vec<f32> {
        (0..len).map(|i| ((i as u32).wrapping_mul(2654435761).wrapping_add(seed) >> 8) as f32 / 16777216.0 - 0.5).collect()
    };
    println!("| product | M×K×N | gemm 0.19 | faer 0.24 | matrixmultiply 0.3 |");
    println!("|---|---|---:|---:|---:|");
    let mut totals = [0.0f64; 3];
    let mut flops_total = 0.0f64;
    for &(name, m, k, n) in SHAPES {
        let (w, x, dy) = (fill(m * k, 1), fill(k * n, 2), fill(m * n, 3));
        let products = [
            ("forward", Product { m, k, n, a: (&w, k as isize, 1), b: (&x, n as isize, 1) }),
            ("weight grad", Product { m, k: n, n: k, a: (&dy, n as isize, 1), b: (&x, 1, n as isize) }),
            ("input grad", Product { m: k, k: m, n, a: (&w, 1, k as isize), b: (&dy, n as isize, 1) }),
        ];
        for (what, p) in &products {
            let libs: [&dyn Fn(&Product, &mut [f32]); 3] = [&with_gemm, &with_faer, &with_matrixmultiply];
            let results: Vec<(f64, Vec<f32>)> = libs.iter().map(|f| gflops(p, reps, *f)).collect();
            // The three agree (float rounding only), or the comparison means nothing.
            let scale = results[0].1.iter().fold(0f32, |a, v| a.max(v.abs())).max(1e-6);
            for r in &results[1..] {
                let err = r.1.iter().zip(&results[0].1).fold(0f32, |a, (x, y)| a.max((x - y).abs()));
                assert!(err / scale < 1e-4, "{name} {what}: libraries disagree ({err})");
            }
            let flops = 2.0 * (p.m * p.k * p.n) as f64;
            flops_total += flops;
            for (t, r) in totals.iter_mut().zip(&results) {
                *t += flops / (r.0 * 1e9);
            }
            println!(
                "| {name}, {what} | {}×{}×{} | {:.1} | {:.1} | {:.1} |",
                p.m, p.k, p.n, results[0].0, results[1].0, results[2].0
            );
        }
    }
    let rate = |t: f64| flops_total / t / 1e9;
    println!(
        "| **all, time-weighted** | | **{:.1}** | **{:.1}** | **{:.1}** |",
        rate(totals[0]),
        rate(totals[1]),
        rate(totals[2])
    );
}
