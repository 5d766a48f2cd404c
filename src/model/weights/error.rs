//! Errors about weights files: each names the file and says what to do.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum WeightsError {
    #[error("cannot read weights file {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error(
        "{path} is not a weights file: {reason} (expected a PyTorch .pth/.pt written by torch.save, or .safetensors)"
    )]
    NotWeights { path: PathBuf, reason: String },

    #[error("{path} is truncated: {detail} (the download or copy was cut short: fetch it again)")]
    Truncated { path: PathBuf, detail: String },

    #[error("{path} is damaged or not a state dict: {detail}")]
    Malformed { path: PathBuf, detail: String },

    #[error("{path} lacks {count} weight(s) the model needs, e.g. `{first}` (is this the right file for this model?)")]
    MissingKeys { path: PathBuf, count: usize, first: String, all: Vec<String> },

    #[error(
        "{path}: `{key}` has shape {found:?} but the model expects {expected:?} (weights for another model or another class count?)"
    )]
    ShapeMismatch { path: PathBuf, key: String, expected: Vec<usize>, found: Vec<usize> },

    #[error("{path} has {count} weight(s) this model does not use, e.g. `{first}` (weights for another model?)")]
    UnexpectedKeys { path: PathBuf, count: usize, first: String, all: Vec<String> },
}

impl WeightsError {
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io { path: path.into(), source }
    }

    pub fn malformed(path: impl Into<PathBuf>, detail: impl ToString) -> Self {
        Self::Malformed { path: path.into(), detail: detail.to_string() }
    }

    pub fn truncated(path: impl Into<PathBuf>, detail: impl ToString) -> Self {
        Self::Truncated { path: path.into(), detail: detail.to_string() }
    }

    pub fn missing_keys(path: impl Into<PathBuf>, mut keys: Vec<String>) -> Self {
        keys.sort();
        Self::MissingKeys { path: path.into(), count: keys.len(), first: keys[0].clone(), all: keys }
    }

    pub fn unexpected_keys(path: impl Into<PathBuf>, mut keys: Vec<String>) -> Self {
        keys.sort();
        Self::UnexpectedKeys { path: path.into(), count: keys.len(), first: keys[0].clone(), all: keys }
    }
}
