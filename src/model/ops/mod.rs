//! Operations candle lacks (or runs slowly), each with a backward pass.

pub mod activation;
pub mod batch_norm;
pub mod bilinear;
pub mod conv;
#[cfg(feature = "cuda")]
mod cuda;
pub mod depthwise;

pub use bilinear::resize_bilinear;
pub use depthwise::{DepthwiseParams, depthwise_conv2d};
