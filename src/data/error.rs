//! Errors about dataset files. Every variant names the file and says what to do about it.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// The OS error is part of the message and deliberately not the error's `source()`: chains
    /// printed with `{:#}` would show it twice.
    #[error("cannot read {path}: {cause}")]
    Io { path: PathBuf, cause: std::io::Error },

    #[error("{what} for id '{id}' not found: {path} (re-extract the dataset, or remove the id from the split list)")]
    MissingFile { what: &'static str, id: String, path: PathBuf },

    #[error("cannot decode {path}: {reason} (the file is corrupt or truncated: re-extract or re-download it)")]
    Decode { path: PathBuf, reason: String },

    #[error("mask {path} is not a PNG file ({reason}); masks must be palette or grayscale PNGs")]
    NotPng { path: PathBuf, reason: String },

    #[error(
        "mask {mask} is {mask_w}×{mask_h} but its image {image} is {image_w}×{image_h}; each mask must have its image's size"
    )]
    SizeMismatch { image: PathBuf, mask: PathBuf, image_w: u32, image_h: u32, mask_w: u32, mask_h: u32 },

    #[error(
        "mask {path} has label value {value} in {pixels} pixel(s), which is not a class of this dataset ({expected})"
    )]
    UnknownLabel { path: PathBuf, value: u32, pixels: usize, expected: String },

    #[error(
        "mask {path} has colour {color:?} in {pixels} pixel(s), which is not in the VOC palette; RGB masks must use the VOC colour map"
    )]
    UnknownColor { path: PathBuf, color: [u8; 3], pixels: usize },

    #[error("split '{split}' not found: {path} does not exist{}", available_hint(.available))]
    MissingSplit { split: String, path: PathBuf, available: Vec<String> },

    #[error("split '{split}' in {path} lists no images")]
    EmptySplit { split: String, path: PathBuf },

    #[error("split file {path} lists id '{id}' {times} times; the id is used once (delete the repeated lines)")]
    DuplicateId { path: PathBuf, id: String, times: usize },

    #[error(
        "mask {path} has colour {color:?} in {pixels} pixel(s), which is the colour of no class in {classes}; \
         RGB masks must use the class colours given there (or save masks as index PNGs)"
    )]
    UnknownClassColor { path: PathBuf, color: [u8; 3], pixels: usize, classes: PathBuf },

    #[error("classes file {path}{}: {reason}", line_hint(.line))]
    ClassesFile { path: PathBuf, line: Option<usize>, reason: String },

    #[error("image {image} has no mask: expected {expected} (add the mask, or move the image out of images/)")]
    ImageWithoutMask { image: PathBuf, expected: PathBuf },

    #[error(
        "mask {mask} has no image: no {stem}.jpg, {stem}.jpeg or {stem}.png in {images} (add the image, or remove the mask)"
    )]
    MaskWithoutImage { mask: PathBuf, stem: String, images: PathBuf },

    #[error(
        "split file {path} line {line} names '{id}', which has no image in images/ and no mask in masks/ \
         (fix the name, or delete the line)"
    )]
    SplitNamesMissing { path: PathBuf, line: usize, id: String },

    #[error("{path} is not a {kind} dataset: {reason}")]
    NotADataset { path: PathBuf, kind: &'static str, reason: String },
}

fn line_hint(line: &Option<usize>) -> String {
    line.map(|n| format!(" line {n}")).unwrap_or_default()
}

fn available_hint(available: &[String]) -> String {
    if available.is_empty() { String::new() } else { format!(" (available splits: {})", available.join(", ")) }
}

impl DataError {
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io { path: path.into(), cause: source }
    }

    pub fn decode(path: impl Into<PathBuf>, reason: impl ToString) -> Self {
        Self::Decode { path: path.into(), reason: reason.to_string() }
    }

    /// A short name of the problem kind, for grouping in reports.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Io { .. } => "unreadable file",
            Self::MissingFile { what: "image", .. } => "missing image",
            Self::MissingFile { .. } => "missing mask",
            Self::Decode { .. } => "undecodable file",
            Self::NotPng { .. } => "mask is not a PNG",
            Self::SizeMismatch { .. } => "size mismatch",
            Self::UnknownLabel { .. } | Self::UnknownColor { .. } | Self::UnknownClassColor { .. } => {
                "unknown label value"
            }
            Self::ClassesFile { .. } => "unreadable classes file",
            Self::ImageWithoutMask { .. } => "image without a mask",
            Self::MaskWithoutImage { .. } => "mask without an image",
            Self::SplitNamesMissing { .. } => "split line naming a missing file",
            Self::MissingSplit { .. } => "missing split file",
            Self::EmptySplit { .. } => "empty split",
            Self::DuplicateId { .. } => "repeated id in the split file",
            Self::NotADataset { .. } => "not a dataset",
        }
    }
}

pub type Result<T, E = DataError> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_os_error_is_printed_once_in_a_chain() {
        let e = DataError::io("/x/y.jpg", std::io::Error::from(std::io::ErrorKind::NotFound));
        let chain = format!("{:#}", anyhow::Error::from(e));
        assert_eq!(chain.matches("not found").count(), 1, "{chain}");
    }
}
