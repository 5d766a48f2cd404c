//! AdamW and SGD with momentum, as PyTorch defines them, with weight decay only on weights of
//! rank ≥ 2 (convolutions, linear layers; never batch-norm parameters or biases), and state that
//! checkpoints can save and restore exactly.

use std::collections::BTreeMap;

use candle_core::backprop::GradStore;
use candle_core::{Result, Tensor, Var};
use serde::{Deserialize, Serialize};

use super::config::{OptimizerConfig, OptimizerKind};
use crate::model::ops::adamw::{self, AdamwStep};

/// A trainable parameter.
pub struct Param {
    pub name: String,
    pub var: Var,
    pub decay: bool,
}

/// Per-parameter moments: AdamW's (m, v), SGD's momentum buffer in `m`.
struct Moments {
    m: Tensor,
    v: Option<Tensor>,
}

/// Optimiser state that is not a tensor.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct OptimizerState {
    /// Updates applied so far (AdamW's bias correction uses it).
    pub t: u64,
}

pub struct Optimizer {
    cfg: OptimizerConfig,
    params: Vec<Param>,
    moments: Vec<Option<Moments>>,
    pub state: OptimizerState,
}

impl Optimizer {
    /// `named` are the trainable variables (batch-norm running statistics excluded).
    pub fn new(cfg: OptimizerConfig, named: Vec<(String, Var)>) -> Self {
        let params: Vec<Param> =
            named.into_iter().map(|(name, var)| Param { decay: var.rank() >= 2, name, var }).collect();
        let moments = params.iter().map(|_| None).collect();
        Self { cfg, params, moments, state: OptimizerState::default() }
    }

    pub fn params(&self) -> &[Param] {
        &self.params
    }

    /// Global L2 norm of the gradients present. The per-parameter sums stay on the device and
    /// are added there in f64 (in parameter order), so a GPU step waits for the host once.
    pub fn grad_norm(&self, grads: &GradStore) -> Result<f64> {
        let mut sq: Option<Tensor> = None;
        for p in &self.params {
            if let Some(g) = grads.get(&p.var) {
                let s = g.sqr()?.sum_all()?.to_dtype(candle_core::DType::F64)?;
                sq = Some(match sq {
                    Some(acc) => (acc + s)?,
                    None => s,
                });
            }
        }
        Ok(sq.map(|t| t.to_scalar::<f64>()).transpose()?.unwrap_or(0.0).sqrt())
    }

    /// One update with learning rate `lr`; gradients are scaled by `grad_scale` first (clipping).
    pub fn step(&mut self, grads: &GradStore, lr: f64, grad_scale: f64) -> Result<()> {
        self.state.t += 1;
        let t = self.state.t as i32;
        let c = &self.cfg;
        for (p, slot) in self.params.iter().zip(self.moments.iter_mut()) {
            let Some(raw) = grads.get(&p.var) else { continue };
            let w = p.var.as_tensor();
            let wd = if p.decay { c.weight_decay } else { 0.0 };
            if c.kind == OptimizerKind::Adamw && adamw::gpu_supports(w) {
                let step =
                    AdamwStep { lr, beta1: c.beta1, beta2: c.beta2, eps: c.eps, weight_decay: wd, t, grad_scale };
                fused_adamw(p, slot, raw, step)?;
                continue;
            }
            let g = if grad_scale != 1.0 { (raw * grad_scale)? } else { raw.clone() };
            match c.kind {
                OptimizerKind::Adamw => {
                    let (m, v) = match slot.take() {
                        Some(Moments { m, v: Some(v) }) => (
                            ((m * c.beta1)? + (&g * (1.0 - c.beta1))?)?,
                            ((v * c.beta2)? + (g.sqr()? * (1.0 - c.beta2))?)?,
                        ),
                        _ => ((&g * (1.0 - c.beta1))?, (g.sqr()? * (1.0 - c.beta2))?),
                    };
                    let m_hat = (&m / (1.0 - c.beta1.powi(t)))?;
                    let v_hat = (&v / (1.0 - c.beta2.powi(t)))?;
                    let decayed = if wd > 0.0 { (w * (1.0 - lr * wd))? } else { w.clone() };
                    let update = (m_hat / (v_hat.sqrt()? + c.eps)?)?;
                    p.var.set(&(decayed - (update * lr)?)?)?;
                    *slot = Some(Moments { m, v: Some(v) });
                }
                OptimizerKind::Sgd => {
                    let g = if wd > 0.0 { (g + (w * wd)?)? } else { g };
                    let buf = match slot.take() {
                        Some(Moments { m, .. }) if c.momentum > 0.0 => ((m * c.momentum)? + &g)?,
                        _ => g,
                    };
                    p.var.set(&(w - (&buf * lr)?)?)?;
                    *slot = Some(Moments { m: buf, v: None });
                }
            }
        }
        Ok(())
    }

    /// The moment tensors, named `<param>.m` / `<param>.v`, for checkpoints.
    pub fn moment_tensors(&self) -> BTreeMap<String, Tensor> {
        let mut out = BTreeMap::new();
        for (p, slot) in self.params.iter().zip(&self.moments) {
            if let Some(mo) = slot {
                out.insert(format!("{}.m", p.name), mo.m.clone());
                if let Some(v) = &mo.v {
                    out.insert(format!("{}.v", p.name), v.clone());
                }
            }
        }
        out
    }

    /// Restores moments saved by [`Optimizer::moment_tensors`].
    pub fn load_moments(&mut self, saved: &BTreeMap<String, Tensor>, state: OptimizerState) -> Result<()> {
        for (p, slot) in self.params.iter().zip(self.moments.iter_mut()) {
            let dev = p.var.device();
            *slot = match saved.get(&format!("{}.m", p.name)) {
                Some(m) => Some(Moments {
                    m: m.to_device(dev)?,
                    v: saved.get(&format!("{}.v", p.name)).map(|v| v.to_device(dev)).transpose()?,
                }),
                None => None,
            };
        }
        self.state = state;
        Ok(())
    }
}

/// AdamW on a GPU: one kernel per parameter (`model::ops::adamw`) instead of a dozen tensor
/// operations. Moments start as zeros, which gives PyTorch's first step exactly.
fn fused_adamw(p: &Param, slot: &mut Option<Moments>, grad: &Tensor, step: AdamwStep) -> Result<()> {
    let w = p.var.as_tensor();
    let (m, v) = match slot.take() {
        Some(Moments { m, v: Some(v) }) => (m, v),
        _ => (w.zeros_like()?, w.zeros_like()?),
    };
    let (w_new, m, v) = adamw::adamw_update_gpu(w, grad, &m, &v, step)?;
    p.var.set(&w_new)?;
    *slot = Some(Moments { m, v: Some(v) });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    /// Minimise ½‖w − target‖² and compare against a hand-rolled scalar AdamW / SGD.
    #[test]
    fn matches_pytorch_update_rules_on_a_quadratic() {
        for kind in [OptimizerKind::Adamw, OptimizerKind::Sgd] {
            let cfg = OptimizerConfig { kind, lr: 0.1, weight_decay: 0.01, grad_clip: None, ..Default::default() };
            let w = Var::from_vec(vec![1f32, -2.0, 3.0, 0.5], (2, 2), &Device::Cpu).unwrap();
            let mut opt = Optimizer::new(cfg.clone(), vec![("w".into(), w.clone())]);
            let target = Tensor::from_vec(vec![0f32, 1.0, -1.0, 2.0], (2, 2), &Device::Cpu).unwrap();
            // Reference, element 0 only.
            let (mut x, mut m, mut v, mut buf) = (1f64, 0f64, 0f64, None::<f64>);
            for t in 1..=5 {
                let loss = ((w.as_tensor() - &target).unwrap().sqr().unwrap().sum_all().unwrap() * 0.5).unwrap();
                opt.step(&loss.backward().unwrap(), cfg.lr, 1.0).unwrap();
                let g = x - 0.0;
                match kind {
                    OptimizerKind::Adamw => {
                        m = 0.9 * m + 0.1 * g;
                        v = 0.999 * v + 0.001 * g * g;
                        let (mh, vh) = (m / (1.0 - 0.9f64.powi(t)), v / (1.0 - 0.999f64.powi(t)));
                        x = x * (1.0 - 0.1 * 0.01) - 0.1 * mh / (vh.sqrt() + 1e-8);
                    }
                    OptimizerKind::Sgd => {
                        let g = g + 0.01 * x;
                        let b = buf.map_or(g, |b| 0.9 * b + g);
                        buf = Some(b);
                        x -= 0.1 * b;
                    }
                }
                let ours = w.as_tensor().flatten_all().unwrap().to_vec1::<f32>().unwrap()[0] as f64;
                assert!((ours - x).abs() < 1e-5, "{kind:?} step {t}: {ours} vs {x}");
            }
        }
    }

    #[test]
    fn no_weight_decay_on_vectors_and_moments_round_trip() {
        let w = Var::ones((3, 3), candle_core::DType::F32, &Device::Cpu).unwrap();
        let b = Var::ones(3, candle_core::DType::F32, &Device::Cpu).unwrap();
        let opt = Optimizer::new(OptimizerConfig::default(), vec![("w".into(), w), ("b".into(), b)]);
        assert!(opt.params()[0].decay && !opt.params()[1].decay);
        let mut moved = Optimizer::new(OptimizerConfig::default(), vec![]);
        moved.load_moments(&opt.moment_tensors(), OptimizerState { t: 3 }).unwrap();
        assert_eq!(moved.state.t, 3);
    }
}
