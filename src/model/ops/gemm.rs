//! The f32 matrix product behind every CPU convolution (`conv.rs`), forward and both gradients.
//!
//! Two libraries, chosen at run time (`SEGDISTILL_GEMM=matrixmultiply|gemm`, default
//! `matrixmultiply`):
//! - `matrixmultiply` 0.3, measured 1.6–2× faster than `gemm` 0.19 on the convolutions' real
//!   products (bench/gemm-shapes, docs/performance.md). It picks its kernel by CPU feature at run
//!   time: AVX-512F, AVX2+FMA, AVX, SSE2 on x86-64, NEON on aarch64, portable elsewhere. Its
//!   AVX-512F and AVX2+FMA kernels round identically for the way we call it (α = 1, β ∈ {0, 1}:
//!   each output is one fused multiply-add chain over the same K blocks), so a model trains to the
//!   same bits on any x86-64 with FMA; the AVX-only and portable kernels multiply and add apart
//!   (float rounding differs).
//! - `gemm` 0.19, what candle itself uses: the comparison path, and a fallback should a
//!   machine-specific fault ever show up in the first.
//!
//! A product runs on one thread (the convolution spreads images over the threads) or, when one
//! product has the machine to itself (batch-1 inference), on all of them: its output columns (or
//! rows, for thin outputs) split into one block per thread.

use std::sync::atomic::{AtomicU8, Ordering};

use candle_core::{Result, bail};
use rayon::prelude::*;

/// A matrix inside a slice: element (i, j) at `i·row_stride + j·col_stride`.
#[derive(Clone, Copy)]
pub(crate) struct Mat<'a> {
    pub data: &'a [f32],
    pub rows: usize,
    pub cols: usize,
    pub row_stride: usize,
    pub col_stride: usize,
}

impl<'a> Mat<'a> {
    pub fn row_major(data: &'a [f32], rows: usize, cols: usize) -> Self {
        Self { data, rows, cols, row_stride: cols, col_stride: 1 }
    }

    pub fn t(self) -> Self {
        Self { rows: self.cols, cols: self.rows, row_stride: self.col_stride, col_stride: self.row_stride, ..self }
    }

    fn fits(&self) -> bool {
        self.rows == 0
            || self.cols == 0
            || (self.rows - 1) * self.row_stride + (self.cols - 1) * self.col_stride < self.data.len()
    }
}

/// Which library computes the products.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum GemmLibrary {
    #[value(name = "matrixmultiply")]
    MatrixMultiply,
    #[value(name = "gemm")]
    Gemm,
}

impl GemmLibrary {
    pub const ALL: [GemmLibrary; 2] = [GemmLibrary::MatrixMultiply, GemmLibrary::Gemm];

    pub fn name(self) -> &'static str {
        match self {
            GemmLibrary::MatrixMultiply => "matrixmultiply",
            GemmLibrary::Gemm => "gemm",
        }
    }

    fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|l| l.name().eq_ignore_ascii_case(name.trim()))
    }

    /// The kernel family the library runs on this CPU (for benchmark reports).
    pub fn kernel(self) -> &'static str {
        match self {
            GemmLibrary::MatrixMultiply => matrixmultiply_kernel(),
            // gemm's f32 AVX-512 kernels need its nightly feature; on stable it stops at AVX2+FMA.
            GemmLibrary::Gemm => match matrixmultiply_kernel() {
                "AVX-512F" => "AVX2+FMA",
                other => other,
            },
        }
    }
}

/// The kernel `matrixmultiply` selects on this CPU (mirrors its run-time detection).
fn matrixmultiply_kernel() -> &'static str {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            return "AVX-512F";
        }
        if std::arch::is_x86_feature_detected!("fma") && std::arch::is_x86_feature_detected!("avx2") {
            return "AVX2+FMA";
        }
        if std::arch::is_x86_feature_detected!("avx") {
            return "AVX";
        }
        "SSE2"
    }
    #[cfg(target_arch = "aarch64")]
    {
        "NEON"
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    {
        "portable"
    }
}

/// 0: not chosen yet (read `SEGDISTILL_GEMM` on first use); else 1 + index into `ALL`.
static CHOSEN: AtomicU8 = AtomicU8::new(0);

thread_local! {
    /// A choice for the calling thread only ([`with_library`]).
    static SCOPED: std::cell::Cell<Option<GemmLibrary>> = const { std::cell::Cell::new(None) };
}

/// The library in use on this thread: [`with_library`]'s while it runs, else [`set_library`]'s,
/// else `SEGDISTILL_GEMM`, else `matrixmultiply`. A convolution reads it when it is called and
/// keeps it for its backward pass and its worker threads.
pub fn library() -> GemmLibrary {
    if let Some(lib) = SCOPED.with(|s| s.get()) {
        return lib;
    }
    match CHOSEN.load(Ordering::Relaxed) {
        0 => {
            let from_env = std::env::var("SEGDISTILL_GEMM").ok();
            let lib = match from_env.as_deref().map(|v| (v, GemmLibrary::from_name(v))) {
                Some((_, Some(lib))) => lib,
                Some((v, None)) => {
                    eprintln!("note: SEGDISTILL_GEMM={v:?} is not one of matrixmultiply, gemm; using matrixmultiply");
                    GemmLibrary::MatrixMultiply
                }
                None => GemmLibrary::MatrixMultiply,
            };
            // A concurrent `set_library` wins over the environment.
            let _ = CHOSEN.compare_exchange(0, index(lib), Ordering::Relaxed, Ordering::Relaxed);
            library()
        }
        i => GemmLibrary::ALL[i as usize - 1],
    }
}

fn index(lib: GemmLibrary) -> u8 {
    GemmLibrary::ALL.iter().position(|&l| l == lib).map_or(1, |i| i as u8 + 1)
}

/// Chooses the library for every later product in this process (the benchmark's `--gemm`).
pub fn set_library(lib: GemmLibrary) {
    CHOSEN.store(index(lib), Ordering::Relaxed);
}

/// Runs `f` with `lib` as this thread's library (tests comparing the two on the same inputs).
pub fn with_library<R>(lib: GemmLibrary, f: impl FnOnce() -> R) -> R {
    let before = SCOPED.with(|s| s.replace(Some(lib)));
    let out = f();
    SCOPED.with(|s| s.set(before));
    out
}

/// Whether a product runs on the calling thread alone or splits over the rayon pool.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Threads {
    One,
    All,
}

/// `dst = a · b` (or `dst += a · b` when `accumulate`), `dst` row-major (a.rows × b.cols).
pub(crate) fn sgemm(
    lib: GemmLibrary,
    dst: &mut [f32],
    a: Mat,
    b: Mat,
    accumulate: bool,
    threads: Threads,
) -> Result<()> {
    let (m, k, n) = (a.rows, a.cols, b.cols);
    if b.rows != k || dst.len() != m * n || !a.fits() || !b.fits() {
        bail!("matrix product of {}×{} and {}×{} into {} values", a.rows, a.cols, b.rows, b.cols, dst.len());
    }
    if m == 0 || n == 0 {
        return Ok(());
    }
    let blocks = if threads == Threads::All { rayon::current_num_threads() } else { 1 };
    // Below ~32 columns (rows) per block the split costs more than it saves.
    let (split_cols, parts) = if n >= 32 * blocks {
        (true, blocks)
    } else if m >= 32 * blocks {
        (false, blocks)
    } else {
        (true, 1)
    };
    let dst_ptr = SendPtr(dst.as_mut_ptr());
    let run = |part: usize| {
        let (len, of) = if split_cols { (n, parts) } else { (m, parts) };
        let (lo, hi) = (len * part / of, len * (part + 1) / of);
        if lo == hi {
            return;
        }
        let p = dst_ptr;
        // SAFETY: the checks above keep every element read from `a` and `b` inside their slices
        // and every element written inside `dst` (m×n row-major, borrowed mutably so it aliases
        // neither input); blocks are disjoint column (row) ranges of `dst`, so no two threads
        // write the same element.
        unsafe {
            if split_cols {
                let b_off = b.data.as_ptr().add(lo * b.col_stride);
                product(
                    lib,
                    (m, k, hi - lo),
                    a.data.as_ptr(),
                    (a.row_stride, a.col_stride),
                    b_off,
                    (b.row_stride, b.col_stride),
                    p.0.add(lo),
                    n,
                    accumulate,
                );
            } else {
                let a_off = a.data.as_ptr().add(lo * a.row_stride);
                product(
                    lib,
                    (hi - lo, k, n),
                    a_off,
                    (a.row_stride, a.col_stride),
                    b.data.as_ptr(),
                    (b.row_stride, b.col_stride),
                    p.0.add(lo * n),
                    n,
                    accumulate,
                );
            }
        }
    };
    if parts == 1 {
        run(0);
    } else {
        (0..parts).into_par_iter().for_each(run);
    }
    Ok(())
}

/// A raw output pointer shared by the threads of one split product (each writes its own block).
#[derive(Clone, Copy)]
struct SendPtr(*mut f32);
// SAFETY: only used by `sgemm`, whose blocks write disjoint elements.
unsafe impl Send for SendPtr {}
unsafe impl Sync for SendPtr {}

/// One single-threaded product into a row-major block with row stride `ldc`.
///
/// # Safety
/// `a` (m×k with strides `sa`), `b` (k×n, `sb`) and `c` (m×n, row stride `ldc`) must be valid for
/// reads (writes) at every index those shapes and strides reach, and `c` must not alias them.
#[allow(clippy::too_many_arguments)]
unsafe fn product(
    lib: GemmLibrary,
    (m, k, n): (usize, usize, usize),
    a: *const f32,
    sa: (usize, usize),
    b: *const f32,
    sb: (usize, usize),
    c: *mut f32,
    ldc: usize,
    accumulate: bool,
) {
    let beta = if accumulate { 1.0 } else { 0.0 };
    unsafe {
        match lib {
            GemmLibrary::MatrixMultiply => matrixmultiply::sgemm(
                m,
                k,
                n,
                1.0,
                a,
                sa.0 as isize,
                sa.1 as isize,
                b,
                sb.0 as isize,
                sb.1 as isize,
                beta,
                c,
                ldc as isize,
                1,
            ),
            GemmLibrary::Gemm => gemm::gemm(
                m,
                n,
                k,
                c,
                1,
                ldc as isize,
                accumulate,
                a,
                sa.1 as isize,
                sa.0 as isize,
                b,
                sb.1 as isize,
                sb.0 as isize,
                1.0,
                1.0,
                false,
                false,
                false,
                gemm::Parallelism::None,
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(a: Mat, b: Mat) -> Vec<f64> {
        let mut out = vec![0f64; a.rows * b.cols];
        for i in 0..a.rows {
            for j in 0..b.cols {
                out[i * b.cols + j] = (0..a.cols)
                    .map(|p| {
                        a.data[i * a.row_stride + p * a.col_stride] as f64
                            * b.data[p * b.row_stride + j * b.col_stride] as f64
                    })
                    .sum();
            }
        }
        out
    }

    #[test]
    fn both_libraries_split_or_not_match_a_naive_product() {
        let mut rng = crate::util::Rng::new(9);
        let pool = rayon::ThreadPoolBuilder::new().num_threads(3).build().unwrap();
        // Thin and wide, transposed operands, sizes around the split thresholds.
        for &(m, k, n, ta, tb) in &[
            (5, 7, 3, false, false),
            (16, 27, 200, false, true),
            (130, 9, 20, true, false),
            (33, 64, 97, true, true),
            (1, 300, 1, false, false),
        ] {
            let av: Vec<f32> = (0..m * k).map(|_| rng.next_f32() - 0.5).collect();
            let bv: Vec<f32> = (0..k * n).map(|_| rng.next_f32() - 0.5).collect();
            let a = if ta { Mat::row_major(&av, k, m).t() } else { Mat::row_major(&av, m, k) };
            let b = if tb { Mat::row_major(&bv, n, k).t() } else { Mat::row_major(&bv, k, n) };
            let want = naive(a, b);
            for lib in GemmLibrary::ALL {
                for threads in [Threads::One, Threads::All] {
                    let got = pool.install(|| {
                        let mut dst = vec![0.25f32; m * n];
                        sgemm(lib, &mut dst, a, b, false, threads).unwrap();
                        // Accumulating adds a second product onto the first.
                        let mut twice = dst.clone();
                        sgemm(lib, &mut twice, a, b, true, threads).unwrap();
                        (dst, twice)
                    });
                    for (i, w) in want.iter().enumerate() {
                        let tol = 1e-5 * (k as f64).sqrt().max(1.0);
                        assert!((got.0[i] as f64 - w).abs() < tol, "{lib:?} {threads:?} {m}×{k}×{n} [{i}]");
                        assert!((got.1[i] as f64 - 2.0 * w).abs() < 2.0 * tol, "{lib:?} {threads:?} accumulate [{i}]");
                    }
                }
            }
        }
    }

    #[test]
    fn a_product_that_does_not_fit_its_slices_is_an_error() {
        let a = [0f32; 6];
        let mut dst = [0f32; 4];
        let bad = Mat { data: &a, rows: 2, cols: 3, row_stride: 4, col_stride: 1 };
        assert!(sgemm(GemmLibrary::Gemm, &mut dst, bad, Mat::row_major(&a, 3, 2), false, Threads::One).is_err());
    }

    #[test]
    fn the_library_is_named_by_the_environment_variable_values() {
        assert_eq!(GemmLibrary::from_name("GEMM"), Some(GemmLibrary::Gemm));
        assert_eq!(GemmLibrary::from_name(" matrixmultiply"), Some(GemmLibrary::MatrixMultiply));
        assert_eq!(GemmLibrary::from_name("blas"), None);
        // `bench --gemm` takes the same names.
        for lib in GemmLibrary::ALL {
            let clap_name = clap::ValueEnum::to_possible_value(&lib).map(|v| v.get_name().to_string());
            assert_eq!(clap_name.as_deref(), Some(lib.name()));
        }
    }

    #[test]
    fn a_scoped_choice_holds_on_its_thread_only_and_ends_with_its_scope() {
        let outside = library();
        let other = if outside == GemmLibrary::Gemm { GemmLibrary::MatrixMultiply } else { GemmLibrary::Gemm };
        with_library(other, || {
            assert_eq!(library(), other);
            assert_eq!(std::thread::spawn(library).join().unwrap(), outside);
        });
        assert_eq!(library(), outside);
    }
}
