//! Errors about weights files: each names the file and says what to do.

use std::path::PathBuf;

/// How many names a message lists before "and N more" (the full list stays in `all`).
const NAMES_SHOWN: usize = 5;

#[derive(Debug, thiserror::Error)]
pub enum WeightsError {
    /// `cause`, not `source`: the OS error is in the message, and `{:#}` chains would repeat it.
    #[error("cannot read weights file {path}: {cause}")]
    Io { path: PathBuf, cause: std::io::Error },

    #[error(
        "{path} is not a weights file: {reason} (expected a PyTorch .pth/.pt written by torch.save, or .safetensors)"
    )]
    NotWeights { path: PathBuf, reason: String },

    #[error("{path} is truncated: {detail} (the download or copy was cut short: fetch it again)")]
    Truncated { path: PathBuf, detail: String },

    #[error("{path} is damaged or not a state dict: {detail}")]
    Malformed { path: PathBuf, detail: String },

    #[error("{path} lacks {count} weight(s) the model needs: {} (is this the right file for this model?)", name_list(.all))]
    MissingKeys { path: PathBuf, count: usize, first: String, all: Vec<String> },

    #[error(
        "{path}: `{key}` has shape {found:?} but the model expects {expected:?} (weights for another model or another class count?)"
    )]
    ShapeMismatch { path: PathBuf, key: String, expected: Vec<usize>, found: Vec<usize> },

    #[error(
        "{path}: `{key}` is stored as {found} but the model needs {expected} values there (an integer or quantized export? save the float state dict instead)"
    )]
    WrongDtype { path: PathBuf, key: String, found: String, expected: String },

    #[error(
        "{path}: `{key}` holds {count} NaN or infinite value(s), the first {first_value} at element {first_index}{} (the file is damaged or comes from a run that diverged: fetch it again or use an earlier checkpoint)",
        others_note(.other_keys)
    )]
    NonFinite {
        path: PathBuf,
        key: String,
        count: usize,
        first_index: usize,
        first_value: f32,
        /// Further tensors with NaN or infinite values, sorted.
        other_keys: Vec<String>,
    },

    #[error("{path} has {count} weight(s) this model does not use: {} (weights for another model?)", name_list(.all))]
    UnexpectedKeys { path: PathBuf, count: usize, first: String, all: Vec<String> },
}

/// "`a`, `b` and 3 more": the first few names of a (sorted) list, so a message stays one line.
fn name_list(names: &[String]) -> String {
    let shown: Vec<String> = names.iter().take(NAMES_SHOWN).map(|n| format!("`{n}`")).collect();
    let rest = names.len().saturating_sub(NAMES_SHOWN);
    if rest == 0 { shown.join(", ") } else { format!("{} and {rest} more", shown.join(", ")) }
}

fn others_note(other_keys: &[String]) -> String {
    if other_keys.is_empty() {
        String::new()
    } else {
        format!("; {} other tensor(s) too: {}", other_keys.len(), name_list(other_keys))
    }
}

impl WeightsError {
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io { path: path.into(), cause: source }
    }

    pub fn malformed(path: impl Into<PathBuf>, detail: impl ToString) -> Self {
        Self::Malformed { path: path.into(), detail: detail.to_string() }
    }

    pub fn truncated(path: impl Into<PathBuf>, detail: impl ToString) -> Self {
        Self::Truncated { path: path.into(), detail: detail.to_string() }
    }

    /// Every key the model needs and the file lacks (sorted here; duplicates dropped).
    pub fn missing_keys(path: impl Into<PathBuf>, mut keys: Vec<String>) -> Self {
        keys.sort();
        keys.dedup();
        Self::MissingKeys { path: path.into(), count: keys.len(), first: first_or_empty(&keys), all: keys }
    }

    pub fn unexpected_keys(path: impl Into<PathBuf>, mut keys: Vec<String>) -> Self {
        keys.sort();
        keys.dedup();
        Self::UnexpectedKeys { path: path.into(), count: keys.len(), first: first_or_empty(&keys), all: keys }
    }
}

fn first_or_empty(keys: &[String]) -> String {
    keys.first().cloned().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("layer{i}.weight")).collect()
    }

    #[test]
    fn missing_keys_are_all_counted_and_the_first_five_named() {
        let e = WeightsError::missing_keys("teacher.pth", names(8));
        let msg = e.to_string();
        assert!(msg.starts_with("teacher.pth lacks 8 weight(s)"), "{msg}");
        assert!(
            msg.contains(
                "`layer0.weight`, `layer1.weight`, `layer2.weight`, `layer3.weight`, `layer4.weight` and 3 more"
            ),
            "{msg}"
        );
        assert!(!msg.contains("layer5"), "{msg}");
        let WeightsError::MissingKeys { count, all, .. } = e else { panic!("{e}") };
        assert_eq!((count, all.len()), (8, 8));
    }

    #[test]
    fn short_lists_are_named_in_full_and_empty_lists_do_not_panic() {
        let msg = WeightsError::unexpected_keys("s.safetensors", names(2)).to_string();
        assert!(msg.contains("2 weight(s) this model does not use: `layer0.weight`, `layer1.weight` ("), "{msg}");
        assert!(WeightsError::missing_keys("s.safetensors", Vec::new()).to_string().contains("lacks 0"));
    }
}
