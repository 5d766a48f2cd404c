//! Whether a forward pass trains or evaluates.

/// Whether a forward pass trains (batch statistics, dropout) or evaluates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Eval,
    /// Training; `seed` drives dropout masks for this step (deterministic, resumable).
    /// `freeze_bn`: batch norm normalises with its running statistics and leaves them as they are
    /// (torchvision's `FrozenBatchNorm2d`; for batches too small for reliable statistics).
    Train {
        seed: u64,
        freeze_bn: bool,
    },
}

impl Mode {
    /// Training with batch norm learning from the batch (the usual case).
    pub fn train(seed: u64) -> Self {
        Mode::Train { seed, freeze_bn: false }
    }

    pub fn is_train(self) -> bool {
        matches!(self, Mode::Train { .. })
    }

    /// Whether batch norm normalises with (and updates its running averages from) the batch's
    /// statistics.
    pub fn batch_statistics(self) -> bool {
        matches!(self, Mode::Train { freeze_bn: false, .. })
    }
}
