//! Which files the end of an epoch writes, and in which order: the policy, apart from the I/O
//! that carries it out (`engine::epoch_end`), so it can be read and tested on its own.

/// One write at the end of an epoch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CheckpointAction {
    /// `checkpoints/last.safetensors`: the run's whole state.
    Last,
    /// `checkpoints/best.safetensors`: the state at the best evaluation.
    Best,
    /// `student.safetensors`: the best student's weights alone.
    StudentWeights,
    /// `best_images.json`: the per-image scores of the best evaluation.
    BestImages,
    /// `checkpoints/epoch-N.safetensors` (`--checkpoint-every`).
    Periodic { epochs_done: usize },
}

/// The writes after epoch `epoch` (0-based). `last` always comes first: it records a new best
/// together with the digest of its weights, so whatever stops the process before the best files
/// are written, the recorded best is in a checkpoint, and the next start rewrites the best files
/// from it (`best_weights::reconcile`).
pub fn after_epoch(epoch: usize, improved: bool, checkpoint_every: usize) -> Vec<CheckpointAction> {
    let mut actions = vec![CheckpointAction::Last];
    if improved {
        actions.extend([CheckpointAction::Best, CheckpointAction::StudentWeights, CheckpointAction::BestImages]);
    }
    let epochs_done = epoch + 1;
    if checkpoint_every > 0 && epochs_done.is_multiple_of(checkpoint_every) {
        actions.push(CheckpointAction::Periodic { epochs_done });
    }
    actions
}

#[cfg(test)]
mod tests {
    use super::*;
    use CheckpointAction::*;

    #[test]
    fn last_comes_first_the_best_files_follow_an_improvement_and_periodic_ones_their_interval() {
        assert_eq!(after_epoch(0, false, 0), [Last]);
        assert_eq!(after_epoch(0, true, 0), [Last, Best, StudentWeights, BestImages]);
        assert_eq!(after_epoch(4, false, 5), [Last, Periodic { epochs_done: 5 }]);
        assert_eq!(after_epoch(3, false, 5), [Last]);
        assert_eq!(after_epoch(9, true, 5), [Last, Best, StudentWeights, BestImages, Periodic { epochs_done: 10 }]);
    }
}
