//! Choosing the compute device.

use serde::{Deserialize, Serialize};

/// Which device to run on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum DeviceChoice {
    /// CUDA when built with it and a GPU is present, else CPU.
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
                    "this segdistill was built without CUDA; rebuild with `cargo build --release --features cuda`"
                )
            }
            Self::Cuda => {
                candle_core::Device::new_cuda(0).map_err(|e| anyhow::anyhow!("cannot open CUDA device 0: {e}"))
            }
            Self::Auto if CUDA_BUILT => Ok(candle_core::Device::new_cuda(0).unwrap_or(candle_core::Device::Cpu)),
            Self::Auto => Ok(candle_core::Device::Cpu),
        }
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
