//! With the `cuda` feature: compiles src/model/ops/kernels.cu to PTX with nvcc (found through
//! CUDA_ROOT / CUDA_PATH / CUDA_HOME or PATH; `scripts/cuda-toolchain.sh` sets them up).
//! The PTX targets the virtual architecture of CUDA_COMPUTE_CAP (default 90: H100/H200), which the
//! driver compiles for the GPU at load time. The default CPU build does nothing here.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    if std::env::var_os("CARGO_FEATURE_CUDA").is_none() {
        return;
    }
    let source = "src/model/ops/kernels.cu";
    println!("cargo:rerun-if-changed={source}");
    for var in ["CUDA_ROOT", "CUDA_PATH", "CUDA_HOME", "CUDA_COMPUTE_CAP", "NVCC"] {
        println!("cargo:rerun-if-env-changed={var}");
    }
    let nvcc = std::env::var_os("NVCC").map(PathBuf::from).unwrap_or_else(|| {
        ["CUDA_ROOT", "CUDA_PATH", "CUDA_HOME"]
            .iter()
            .filter_map(std::env::var_os)
            .map(|root| PathBuf::from(root).join("bin/nvcc"))
            .find(|p| p.is_file())
            .unwrap_or_else(|| PathBuf::from("nvcc"))
    });
    let cap = std::env::var("CUDA_COMPUTE_CAP").unwrap_or_else(|_| "90".into());
    let cap: String = cap.chars().filter(char::is_ascii_digit).collect();
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR")).join("kernels.ptx");
    let status = Command::new(&nvcc)
        .args(["--ptx", "-O3", "--use_fast_math", &format!("-arch=compute_{cap}"), source, "-o"])
        .arg(&out)
        .status();
    match status {
        Ok(s) if s.success() => {}
        Ok(s) => panic!("{} failed ({s}) compiling {source}", nvcc.display()),
        Err(e) => panic!(
            "cannot run {} ({e}): the `cuda` feature needs nvcc; run `eval \"$(scripts/cuda-toolchain.sh)\"` \
             or set CUDA_ROOT",
            nvcc.display()
        ),
    }
}
