//! Building blocks shared by the architectures, laid out so that VarBuilder paths equal
//! torchvision's `state_dict` keys (`Conv2dNormActivation` → `<p>.0` conv, `<p>.1` norm). One
//! concept per file; each layer's ONNX form sits beside its forward pass.

mod activation;
mod batch_norm;
mod blocks;
mod conv;
mod macs;
mod mode;

pub use activation::{Activation, hardsigmoid, hardswish};
pub use batch_norm::{BatchNorm2d, bn_config, bn_default};
pub use blocks::{ConvBnAct, Dropout, Linear, global_avg_pool, max_pool_3x3_s2_nonnegative};
pub use conv::{CONV_INIT, Conv2d, ConvOpts};
pub use macs::count_macs;
pub use mode::Mode;
