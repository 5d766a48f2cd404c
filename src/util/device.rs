//! Choosing the compute device and the precision of its matrix products.
//!
//! A `cuda` build loads the CUDA libraries when a device is first opened (cudarc's dynamic
//! loading), so the same binary starts on a machine without a GPU. Before opening a device the
//! libraries are probed here: cudarc itself panics when one is missing. `auto` then runs on the
//! CPU and says why, once per process.

use std::sync::Once;

use serde::{Deserialize, Serialize};

/// Which device to run on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum DeviceChoice {
    /// CUDA when built with it and a GPU works, else CPU.
    #[default]
    Auto,
    Cpu,
    Cuda,
}

/// Whether this binary was built with CUDA support.
pub const CUDA_BUILT: bool = cfg!(feature = "cuda");

impl DeviceChoice {
    pub fn resolve(self) -> anyhow::Result<candle_core::Device> {
        match self {
            Self::Cpu => Ok(candle_core::Device::Cpu),
            Self::Cuda if !CUDA_BUILT => {
                anyhow::bail!(
                    "this segdistill was built without CUDA; rebuild with `cargo build --release --features cuda` \
                     (scripts/start.sh does it when `nvidia-smi` works)"
                )
            }
            Self::Cuda => open_cuda().map_err(|why| anyhow::anyhow!("cannot use the GPU: {why}")),
            Self::Auto if CUDA_BUILT => Ok(open_cuda().unwrap_or_else(|why| {
                static SAID: Once = Once::new();
                SAID.call_once(|| eprintln!("note: no usable GPU ({why}); running on the CPU"));
                candle_core::Device::Cpu
            })),
            Self::Auto => Ok(candle_core::Device::Cpu),
        }
    }
}

/// Opens CUDA device 0, or says why it cannot: a missing library (named), no driver or no GPU.
fn open_cuda() -> Result<candle_core::Device, String> {
    if let Some(missing) = missing_cuda_library() {
        return Err(format!(
            "{missing} was not found (install the NVIDIA driver and the CUDA 13 libraries, or add their \
             folder to LD_LIBRARY_PATH)"
        ));
    }
    // cudarc panics rather than returning some errors (a symbol missing from an old driver);
    // a panic here must not take the app down, so it becomes the reason for the fallback.
    match std::panic::catch_unwind(|| candle_core::Device::new_cuda(0)) {
        Ok(Ok(device)) => Ok(device),
        Ok(Err(e)) => Err(format!("CUDA device 0 did not open: {e}")),
        Err(panic) => Err(format!("CUDA device 0 did not open: {}", panic_text(&panic))),
    }
}

fn panic_text(panic: &Box<dyn std::any::Any + Send>) -> String {
    panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "a panic inside the CUDA bindings".into())
}

/// The first CUDA library the cuda build needs that cannot be loaded, if any.
#[cfg(feature = "cuda")]
fn missing_cuda_library() -> Option<&'static str> {
    use candle_core::cuda_backend::cudarc;
    // SAFETY: each probe only dlopens (and closes) the library by its usual names.
    type Probe = (&'static str, unsafe fn() -> bool);
    let probes: [Probe; 5] = [
        ("libcuda.so (the NVIDIA driver)", cudarc::driver::sys::is_culib_present),
        ("libcublas.so", cudarc::cublas::sys::is_culib_present),
        ("libcublasLt.so", cudarc::cublaslt::sys::is_culib_present),
        ("libcurand.so", cudarc::curand::sys::is_culib_present),
        ("libnvrtc.so", cudarc::nvrtc::sys::is_culib_present),
    ];
    probes.into_iter().find(|(_, present)| !unsafe { present() }).map(|(name, _)| name)
}

#[cfg(not(feature = "cuda"))]
fn missing_cuda_library() -> Option<&'static str> {
    Some("CUDA support (this build has none)")
}

/// The arithmetic of matrix products and convolutions on the GPU. The CPU always computes in
/// fp32; losses, soft-max, batch-norm statistics and the optimiser are fp32 in every mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// IEEE fp32 everywhere.
    Fp32,
    /// Tensor-core products with fp32 range and a 10-bit mantissa, accumulated in fp32: PyTorch's
    /// default for cuDNN convolutions.
    Tf32,
    /// bfloat16 autocast: convolutions and products in bf16 (fp32 accumulation), fp32 master
    /// weights, batch norm, resizing, losses, soft-max and optimiser in fp32. GPU only.
    Bf16,
}

impl Precision {
    /// What runs when none is chosen: `tf32` on a GPU (as PyTorch's convolutions), `fp32` on a CPU.
    pub fn default_for(device: &candle_core::Device) -> Self {
        if device.is_cuda() { Self::Tf32 } else { Self::Fp32 }
    }

    /// The dtype activations flow in: bf16 under autocast, else f32.
    pub fn compute_dtype(self) -> candle_core::DType {
        match self {
            Self::Bf16 => candle_core::DType::BF16,
            Self::Fp32 | Self::Tf32 => candle_core::DType::F32,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Fp32 => "fp32",
            Self::Tf32 => "tf32",
            Self::Bf16 => "bf16",
        }
    }

    /// Sets this precision for the work that follows on `device` (process-wide: candle keeps
    /// one switch for its matrix products), and returns the precision in effect there.
    pub fn apply(choice: Option<Self>, device: &candle_core::Device) -> anyhow::Result<Self> {
        let precision = choice.unwrap_or_else(|| Self::default_for(device));
        anyhow::ensure!(
            precision != Self::Bf16 || device.is_cuda(),
            "--precision bf16 needs a GPU (candle's CPU matrix products have no bf16); use fp32 on the CPU"
        );
        candle_core::cuda::set_gemm_reduced_precision_f32(device.is_cuda() && precision == Self::Tf32);
        // bf16 products accumulate in fp32 either way; tf32 stays on for the fp32 parts.
        Ok(if device.is_cuda() { precision } else { Self::Fp32 })
    }
}

impl std::fmt::Display for Precision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A short description of a device ("cpu (2 threads)", "cuda:0").
pub fn describe(device: &candle_core::Device) -> String {
    match device {
        candle_core::Device::Cpu => format!("cpu ({} threads)", rayon::current_num_threads()),
        candle_core::Device::Cuda(_) => "cuda:0".to_string(),
        candle_core::Device::Metal(_) => "metal".to_string(),
    }
}

/// Waits for queued device work (for honest timings).
pub fn synchronize(device: &candle_core::Device) -> candle_core::Result<()> {
    device.synchronize()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_resolves_to_a_device_and_cpu_precision_is_fp32() {
        let device = DeviceChoice::Auto.resolve().unwrap();
        if !CUDA_BUILT {
            assert!(device.is_cpu());
            let err = DeviceChoice::Cuda.resolve().unwrap_err().to_string();
            assert!(err.contains("--features cuda"), "{err}");
        }
        let cpu = candle_core::Device::Cpu;
        assert_eq!(Precision::default_for(&cpu), Precision::Fp32);
        assert_eq!(Precision::apply(Some(Precision::Tf32), &cpu).unwrap(), Precision::Fp32);
        if CUDA_BUILT {
            // (Without CUDA, candle's placeholder always answers true.)
            assert!(!candle_core::cuda::gemm_reduced_precision_f32(), "tf32 is never switched on for the CPU");
        }
        let bf16 = Precision::apply(Some(Precision::Bf16), &cpu).unwrap_err().to_string();
        assert!(bf16.contains("bf16") && bf16.contains("GPU"), "{bf16}");
    }
}
