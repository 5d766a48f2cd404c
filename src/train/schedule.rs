//! Learning-rate schedules: linear warm-up, then poly / cosine / step / reduce-on-plateau /
//! constant. Per-step schedules are pure functions of the step; the plateau schedule keeps a
//! little state, which checkpoints save.

use serde::{Deserialize, Serialize};

use super::config::{ScheduleConfig, ScheduleKind};

/// Reduce-on-plateau bookkeeping.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PlateauState {
    pub best: Option<f64>,
    pub bad_epochs: usize,
    pub scale: f64,
}

impl Default for PlateauState {
    fn default() -> Self {
        Self { best: None, bad_epochs: 0, scale: 1.0 }
    }
}

#[derive(Clone, Debug)]
pub struct Schedule {
    cfg: ScheduleConfig,
    base_lr: f64,
    total_steps: usize,
    steps_per_epoch: usize,
    pub plateau: PlateauState,
}

impl Schedule {
    pub fn new(cfg: ScheduleConfig, base_lr: f64, total_steps: usize, steps_per_epoch: usize) -> Self {
        Self {
            cfg,
            base_lr,
            total_steps: total_steps.max(1),
            steps_per_epoch: steps_per_epoch.max(1),
            plateau: PlateauState::default(),
        }
    }

    /// Learning rate for 0-based global step `step`.
    pub fn lr(&self, step: usize) -> f64 {
        let c = &self.cfg;
        if step < c.warmup_steps {
            let f = c.warmup_start + (1.0 - c.warmup_start) * step as f64 / c.warmup_steps as f64;
            return self.base_lr * f;
        }
        let t = (step - c.warmup_steps) as f64;
        let span = self.total_steps.saturating_sub(c.warmup_steps).max(1) as f64;
        let lr = match c.kind {
            ScheduleKind::Constant => self.base_lr,
            ScheduleKind::Poly => self.base_lr * (1.0 - t / span).max(0.0).powf(c.power),
            ScheduleKind::Cosine => self.base_lr * 0.5 * (1.0 + (std::f64::consts::PI * (t / span).min(1.0)).cos()),
            ScheduleKind::Step => {
                let epoch = step / self.steps_per_epoch;
                self.base_lr * c.gamma.powi((epoch / c.step_epochs.max(1)) as i32)
            }
            ScheduleKind::Plateau => self.base_lr * self.plateau.scale,
        };
        lr.max(c.min_lr)
    }

    /// Called after each evaluation with the validation mIoU (higher is better).
    pub fn on_epoch_end(&mut self, val_miou: f64) {
        if self.cfg.kind != ScheduleKind::Plateau || !val_miou.is_finite() {
            return;
        }
        let p = &mut self.plateau;
        if p.best.is_none_or(|b| val_miou > b + 1e-4) {
            p.best = Some(val_miou);
            p.bad_epochs = 0;
        } else {
            p.bad_epochs += 1;
            if p.bad_epochs > self.cfg.patience {
                p.scale *= self.cfg.factor;
                p.bad_epochs = 0;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sched(kind: ScheduleKind, warmup: usize) -> Schedule {
        let cfg = ScheduleConfig { kind, warmup_steps: warmup, ..Default::default() };
        Schedule::new(cfg, 1.0, 100, 10)
    }

    #[test]
    fn schedules_follow_their_formulas() {
        let cases: [(ScheduleKind, usize, f64); 8] = [
            (ScheduleKind::Poly, 0, 1.0),
            (ScheduleKind::Poly, 50, 0.5f64.powf(0.9)),
            (ScheduleKind::Poly, 100, 0.0),
            (ScheduleKind::Cosine, 50, 0.5),
            (ScheduleKind::Cosine, 100, 0.0),
            (ScheduleKind::Step, 99, 1.0),
            (ScheduleKind::Constant, 70, 1.0),
            (ScheduleKind::Plateau, 70, 1.0),
        ];
        for (kind, step, expect) in cases {
            let lr = sched(kind, 0).lr(step);
            assert!((lr - expect).abs() < 1e-9, "{kind:?} at {step}: {lr} vs {expect}");
        }
        let s = Schedule::new(
            ScheduleConfig { kind: ScheduleKind::Step, step_epochs: 2, gamma: 0.1, ..Default::default() },
            1.0,
            100,
            10,
        );
        assert!((s.lr(45) - 0.01).abs() < 1e-12, "epoch 4 → two decays");
    }

    #[test]
    fn warmup_ramps_linearly_then_hands_over() {
        let s = sched(ScheduleKind::Constant, 10);
        assert!((s.lr(0) - 0.1).abs() < 1e-12);
        assert!((s.lr(5) - 0.55).abs() < 1e-12);
        assert_eq!(s.lr(10), 1.0);
    }

    #[test]
    fn plateau_reduces_after_patience() {
        let mut s = Schedule::new(
            ScheduleConfig { kind: ScheduleKind::Plateau, patience: 1, factor: 0.5, ..Default::default() },
            1.0,
            100,
            10,
        );
        for miou in [0.3, 0.4, 0.4, 0.39] {
            s.on_epoch_end(miou);
        }
        assert_eq!(s.lr(0), 0.5, "two epochs without improvement with patience 1 → one reduction");
    }
}
