use candle::Result;
use prost::Message;

/// The ONNX message types, generated from `onnx.proto3` by prost-build 0.14 (committed, so that
/// building needs no `protoc`; see PATCHES.md for how to regenerate).
#[allow(clippy::all)]
pub mod onnx {
    include!("onnx.rs");
}

pub mod eval;
pub use eval::{dtype, simple_eval};

pub fn read_file<P: AsRef<std::path::Path>>(p: P) -> Result<onnx::ModelProto> {
    let buf = std::fs::read(p)?;
    onnx::ModelProto::decode(buf.as_slice()).map_err(candle::Error::wrap)
}
