//! Per-pixel softmax pieces over the class planes of one image's NCHW logits, shared by the fused
//! loss kernels (cross-entropy, response KD).
//!
//! The losses run at the input resolution (B·C·H·W logits, 11 M values at batch 8, 256², VOC),
//! so their exponentials are a visible share of a training step: [`exp`] is a polynomial the
//! compiler vectorises, where `f32::exp` is a scalar libm call per value.

/// e^x with a relative error below 3·10⁻⁷ for x in [−87, 88] (Cephes' `expf`: x = n·ln 2 + r,
/// a degree-6 polynomial for e^r, 2ⁿ through the exponent bits). Below −87 it returns ~10⁻³⁸
/// instead of 0 (harmless in a softmax sum); above 88 it saturates at ~10³⁸. NaN stays NaN.
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    // Adding and subtracting 1.5·2²³ rounds to the nearest integer without a rounding instruction.
    const ROUND: f32 = 12_582_912.0;
    let x = x.clamp(-87.3, 88.3);
    let n = (x * LOG2E + ROUND) - ROUND;
    let r = x - n * LN2_HI - n * LN2_LO;
    let mut p = 1.987_569_1e-4f32;
    p = p * r + 1.398_199_9e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 1.666_666_5e-1;
    p = p * r + 0.5;
    let e = p * r * r + r + 1.0;
    e * f32::from_bits(((n as i32 + 127) as u32) << 23)
}

/// The logits of one image: C planes of H·W values.
#[derive(Clone, Copy)]
pub struct ClassPlanes<'a> {
    pub z: &'a [f32],
    pub classes: usize,
    /// Values per plane (H·W).
    pub plane: usize,
}

impl<'a> ClassPlanes<'a> {
    /// Image `b` of a (B, C, H, W) buffer.
    pub fn of_image(all: &'a [f32], b: usize, classes: usize, plane: usize) -> Self {
        Self { z: &all[b * classes * plane..(b + 1) * classes * plane], classes, plane }
    }

    /// The `w` values of class `k` from pixel `off` on.
    #[inline]
    pub fn row(&self, k: usize, off: usize, w: usize) -> &'a [f32] {
        &self.z[k * self.plane + off..k * self.plane + off + w]
    }

    /// log Σₖ e^(z_k/τ) for the `lse.len()` pixels from `off` on (`max` is scratch of that length).
    pub fn row_lse(&self, off: usize, tau: f32, max: &mut [f32], lse: &mut [f32]) {
        let (w, inv_tau) = (lse.len(), 1.0 / tau);
        max.iter_mut().for_each(|m| *m = f32::NEG_INFINITY);
        for k in 0..self.classes {
            for (m, &v) in max.iter_mut().zip(self.row(k, off, w)) {
                *m = m.max(v * inv_tau);
            }
        }
        lse.iter_mut().for_each(|s| *s = 0.0);
        for k in 0..self.classes {
            for ((s, &v), &m) in lse.iter_mut().zip(self.row(k, off, w)).zip(max.iter()) {
                *s += exp(v * inv_tau - m);
            }
        }
        for (s, &m) in lse.iter_mut().zip(max.iter()) {
            *s = s.ln() + m;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_matches_the_library_to_float_precision() {
        let mut worst = 0f64;
        let mut x = -87.0f32;
        while x < 88.0 {
            let (ours, reference) = (exp(x) as f64, (x as f64).exp());
            worst = worst.max((ours - reference).abs() / reference);
            x += 0.001_37;
        }
        assert!(worst < 3e-7, "max relative error {worst}");
        assert_eq!(exp(0.0), 1.0);
        assert!(exp(-1000.0) < 1e-37 && exp(-1000.0) >= 0.0);
        assert!(exp(f32::NAN).is_nan());
    }

    #[test]
    fn row_lse_is_log_sum_exp_over_classes() {
        // 2 classes, 3 pixels per plane; pixels 1..3 of the row.
        let z = [0.0f32, 1.0, -2.0, 3.0, 1.0, 50.0];
        let planes = ClassPlanes { z: &z, classes: 2, plane: 3 };
        let (mut m, mut lse) = ([0f32; 2], [0f32; 2]);
        planes.row_lse(1, 2.0, &mut m, &mut lse);
        let expect = |a: f32, b: f32| ((a / 2.0).exp() + (b / 2.0).exp()).ln();
        assert!((lse[0] - expect(1.0, 1.0)).abs() < 1e-6);
        assert!((lse[1] - expect(-2.0, 50.0)).abs() < 1e-5);
    }
}
