//! What a resume may change beyond [`RESUMABLE`](super::config::RESUMABLE): inputs that moved
//! (a dataset or teacher file in a new place, a run copied to another machine) when the new
//! place holds the same content, checked against the digests the run recorded when it started;
//! and the batch size (the schedule is in steps, so it is re-laid over the new step count).

use std::path::Path;
use std::sync::Arc;

use super::TrainConfig;
use super::checkpoint::InputDigests;
use super::config::SettingChange;
use crate::data::Dataset;

/// The digest a run records of its data: the training split's fingerprint, then the
/// validation split's.
pub fn data_digest(train: &Dataset, val: &Dataset) -> String {
    format!("{}:{}", train.fingerprint(), val.fingerprint())
}

/// SHA-256 of a weights file.
pub fn file_digest(path: &Path) -> anyhow::Result<String> {
    use crate::data::download::{NoProgress, checksum};
    Ok(checksum::digest_file(path, checksum::Algorithm::Sha256, &NoProgress)?)
}

/// Whether a resume may make change `c` to a setting outside [`RESUMABLE`]: `Ok(note)` to tell
/// the user, or `Err(why)` (text that follows "the run was made with …").
pub fn allowed_change(
    c: &SettingChange,
    requested: &TrainConfig,
    recorded: &InputDigests,
    open_splits: &dyn Fn(&TrainConfig) -> anyhow::Result<(Arc<Dataset>, Arc<Dataset>)>,
) -> Result<String, String> {
    match c.setting.as_str() {
        "data" => {
            let Some(want) = &recorded.data else {
                return Err("; the run recorded no digest of its data (made by an older version, or no epoch \
                     finished yet), so a moved copy cannot be told from other data"
                    .into());
            };
            let (train, val) = open_splits(requested).map_err(|e| format!("; {} cannot be used: {e:#}", c.new))?;
            if data_digest(&train, &val) == *want {
                Ok(format!(
                    "the dataset moved: {} holds the same splits and masks the run was made with; resuming with it",
                    c.new
                ))
            } else {
                Err(format!("; {} holds other data (its split lists or masks differ from the run's)", c.new))
            }
        }
        "teacher_weights" => {
            let Some(want) = &recorded.teacher else {
                return Err("; the run recorded no digest of its teacher (made by an older version, or no epoch \
                     finished yet), so a moved copy cannot be told from another file"
                    .into());
            };
            let path = requested.teacher_weights.as_deref().ok_or("; a distilling run needs its teacher")?;
            match file_digest(path) {
                Ok(d) if d == *want => Ok(format!(
                    "the teacher moved: {} holds the same weights the run was made with; resuming with it",
                    c.new
                )),
                Ok(_) => Err(format!("; {} holds other weights than the run's teacher", c.new)),
                Err(e) => Err(format!("; {e:#}")),
            }
        }
        "backbone_weights" | "init_weights" => Ok(format!(
            "{} is read only when a run starts; the new path {} is recorded (the run continues from its checkpoint)",
            c.setting.replace('_', " "),
            c.new
        )),
        "batch" => Ok(format!("batch size {} (was {})", c.new, c.old)),
        _ => Err(String::new()),
    }
}

/// The flag that sets a setting a resume may change beyond `RESUMABLE` (for messages).
pub fn flag_of(setting: &str) -> Option<&'static str> {
    super::config::RELOCATABLE.iter().find(|(s, _)| *s == setting).map(|(_, flag)| *flag)
}
