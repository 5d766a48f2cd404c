//! Operations candle lacks (or runs slowly), each with a backward pass.

pub mod bilinear;
pub mod depthwise;

pub use bilinear::resize_bilinear;
pub use depthwise::{DepthwiseParams, depthwise_conv2d};
