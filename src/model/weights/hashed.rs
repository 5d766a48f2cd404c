//! Parameters filled by a formula that Python computes exactly as well
//! (`bench/make_zoo_fixtures.py`, `hashed_values`), so torchvision parity of a whole network can be
//! checked from a few kilobytes of reference outputs instead of its weights. Each tensor's values
//! come from splitmix64 seeded with the FNV-1a hash of its name; the maths is done in f64 and
//! rounded once to f32 on both sides.

use std::collections::BTreeMap;

use candle_core::{Device, Result, Tensor};

fn fnv1a64(text: &str) -> u64 {
    text.bytes().fold(0xCBF2_9CE4_8422_2325, |h, b| (h ^ b as u64).wrapping_mul(0x0100_0000_01B3))
}

/// splitmix64 of `seed + i·φ`, its top 24 bits as a value in [0, 1).
fn uniform(seed: u64, i: u64) -> f64 {
    let mut z = seed.wrapping_add(i.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    (z >> 40) as f64 / (1u64 << 24) as f64
}

/// The values of tensor `name` of `shape`: running variances in [0.5, 1.5), running means and
/// biases small, batch-norm scales (the other rank-1 tensors) in [0.5, 1.5), weights uniform with
/// variance 1/fan-in — a network whose activations neither vanish nor explode.
pub fn hashed_values(name: &str, shape: &[usize]) -> Vec<f32> {
    let n: usize = shape.iter().product();
    let seed = fnv1a64(name);
    let fan_in: usize = shape.iter().skip(1).product();
    let bound = (3.0 / fan_in.max(1) as f64).sqrt();
    (0..n as u64)
        .map(|i| {
            let u = uniform(seed, i);
            let v = if name.ends_with("running_var") {
                0.5 + u
            } else if name.ends_with("running_mean") || name.ends_with("bias") {
                (u - 0.5) * 0.02
            } else if shape.len() == 1 {
                0.5 + u
            } else {
                (2.0 * u - 1.0) * bound
            };
            v as f32
        })
        .collect()
}

/// A state dict with every `(name, shape)` of `listing` filled by [`hashed_values`].
pub fn hashed_state_dict(listing: &[(String, Vec<usize>)], device: &Device) -> Result<BTreeMap<String, Tensor>> {
    listing
        .iter()
        .map(|(name, shape)| {
            Ok((name.clone(), Tensor::from_vec(hashed_values(name, shape), shape.as_slice(), device)?))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_match_the_python_formula() {
        // Printed by `bench/make_zoo_fixtures.py`'s functions: fnv1a64("input") and
        // hashed_values("input", (1, 3, 57, 67)).flatten()[:3].
        assert_eq!(fnv1a64("input"), 0x1ebb_ae8f_5810_b65b);
        let input = hashed_values("input", &[1, 3, 57, 67]);
        let python = [-0.0158175490796566f64, -0.013015997596085072, 0.004930911585688591];
        assert_eq!(&input[..3], python.map(|v| v as f32).as_slice());
        let v = hashed_values("layer1.0.conv1.weight", &[64, 64, 1, 1]);
        let bound = (3.0f64 / 64.0).sqrt() as f32;
        assert!(v.iter().all(|x| x.abs() <= bound), "weights within ±√(3/fan_in)");
        let mean = v.iter().sum::<f32>() / v.len() as f32;
        assert!(mean.abs() < 0.02, "centred: {mean}");
        let var = hashed_values("bn1.running_var", &[64]);
        assert!(var.iter().all(|x| (0.5..1.5).contains(x)));
        assert_ne!(hashed_values("a.weight", &[4, 4]), hashed_values("b.weight", &[4, 4]), "names seed the values");
    }
}
