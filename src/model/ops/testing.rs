//! What the tests of fused operations share: comparing a fused op with the tensor formula it
//! replaces, values and gradients.

use candle_core::{Tensor, Var};

/// max |a − b| relative to max |b| (floored at 10⁻⁶).
pub fn max_rel_diff(a: &Tensor, b: &Tensor) -> f32 {
    let scale = b.abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap().max(1e-6);
    (a - b).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap() / scale
}

/// The gradients with respect to `vars` of Σ m·`ours` and Σ m·`reference` for one random m, so
/// that every entry of each gradient is weighted differently and checked.
pub fn mixed_gradients<const N: usize>(ours: &Tensor, reference: &Tensor, vars: [&Var; N]) -> [(Tensor, Tensor); N] {
    let mix = Tensor::randn(0f32, 1.0, ours.shape(), ours.device()).unwrap();
    let grads = |t: &Tensor| (t * &mix).unwrap().sum_all().unwrap().backward().unwrap();
    let (g_ours, g_reference) = (grads(ours), grads(reference));
    vars.map(|v| (g_ours.get(v).unwrap().clone(), g_reference.get(v).unwrap().clone()))
}
