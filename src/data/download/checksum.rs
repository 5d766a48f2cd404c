//! Checksums of downloaded files: VOC publishes an MD5; ADE20K's archive is pinned by the SHA-1 the
//! scene-parsing tool kits publish for it; torchvision names its weight files after a prefix of
//! their SHA-256 (`fcn_resnet50_coco-1167a1af.pth`), as `torch.hub` checks them.

use std::io::Read;
use std::path::Path;

use md5::Md5;
use md5::digest::DynDigest;
use sha1::Sha1;
use sha2::Sha256;

use super::{DownloadError, Observer, Stage};

/// What a file's content must hash to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Checksum {
    /// The full MD5, lowercase hex.
    Md5(String),
    /// The full SHA-1, lowercase hex (only for published checksums: a user pins with SHA-256).
    Sha1(String),
    /// A prefix (≥ 8 hex digits) of the SHA-256, lowercase hex.
    Sha256Prefix(String),
}

impl Checksum {
    /// An MD5 given by a user (`--md5`): 32 hex digits.
    pub fn md5(hex: &str) -> Result<Self, String> {
        let h = hex.trim().to_ascii_lowercase();
        if h.len() == 32 && h.bytes().all(|b| b.is_ascii_hexdigit()) {
            Ok(Self::Md5(h))
        } else {
            Err(format!("`{hex}` is not an MD5 (32 hex digits)"))
        }
    }

    /// A SHA-256 or a prefix of one (at least 8 hex digits).
    pub fn sha256(hex: &str) -> Result<Self, String> {
        let h = hex.trim().to_ascii_lowercase();
        if (8..=64).contains(&h.len()) && h.bytes().all(|b| b.is_ascii_hexdigit()) {
            Ok(Self::Sha256Prefix(h))
        } else {
            Err(format!("`{hex}` is not a SHA-256 or a prefix of one (8 to 64 hex digits)"))
        }
    }

    /// The hash torchvision puts in a weight file's name: `name-<sha256 prefix>.pth`.
    pub fn from_torch_file_name(name: &str) -> Option<Self> {
        let stem = name.rsplit_once('.').map_or(name, |(s, _)| s);
        let (_, hash) = stem.rsplit_once('-')?;
        Self::sha256(hash).ok()
    }

    pub fn algorithm(&self) -> Algorithm {
        match self {
            Self::Md5(_) => Algorithm::Md5,
            Self::Sha1(_) => Algorithm::Sha1,
            Self::Sha256Prefix(_) => Algorithm::Sha256,
        }
    }

    fn expected(&self) -> &str {
        match self {
            Self::Md5(h) | Self::Sha1(h) | Self::Sha256Prefix(h) => h,
        }
    }

    /// Whether a full hex digest of this checksum's algorithm matches.
    fn matches(&self, digest_hex: &str) -> bool {
        match self {
            Self::Md5(h) | Self::Sha1(h) => digest_hex == h,
            Self::Sha256Prefix(p) => digest_hex.starts_with(p.as_str()),
        }
    }
}

/// A hash function a [`Checksum`] uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Algorithm {
    Md5,
    Sha1,
    Sha256,
}

impl Algorithm {
    pub fn name(self) -> &'static str {
        match self {
            Self::Md5 => "MD5",
            Self::Sha1 => "SHA-1",
            Self::Sha256 => "SHA-256",
        }
    }

    fn hasher(self) -> Box<dyn DynDigest> {
        match self {
            Self::Md5 => Box::new(Md5::default()),
            Self::Sha1 => Box::new(Sha1::default()),
            Self::Sha256 => Box::new(Sha256::default()),
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Hashes `path` with `algorithm`, reporting progress; returns the full hex digest.
pub fn digest_file(path: &Path, algorithm: Algorithm, observer: &dyn Observer) -> Result<String, DownloadError> {
    let io = |e| DownloadError::io(path, e);
    let mut file = std::fs::File::open(path).map_err(io)?;
    let len = file.metadata().map_err(io)?.len();
    observer.stage(Stage::Verifying, Some(len));
    let mut hasher = algorithm.hasher();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        if observer.cancelled() {
            return Err(DownloadError::Cancelled);
        }
        let n = file.read(&mut buf).map_err(io)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        observer.advance(n as u64);
    }
    Ok(hex(&hasher.finalize()))
}

/// Checks `path` against `checksum`. A mismatch is an error naming both digests.
pub fn verify_file(path: &Path, checksum: &Checksum, observer: &dyn Observer) -> Result<(), DownloadError> {
    let actual = digest_file(path, checksum.algorithm(), observer)?;
    if checksum.matches(&actual) {
        Ok(())
    } else {
        Err(DownloadError::ChecksumMismatch {
            path: path.to_path_buf(),
            algorithm: checksum.algorithm().name(),
            expected: checksum.expected().to_string(),
            actual,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::download::NoProgress;

    #[test]
    fn parses_torchvision_file_names_and_user_hashes() {
        assert_eq!(
            Checksum::from_torch_file_name("fcn_resnet50_coco-1167a1af.pth"),
            Some(Checksum::Sha256Prefix("1167a1af".into()))
        );
        assert_eq!(Checksum::from_torch_file_name("weights.pth"), None);
        assert_eq!(Checksum::from_torch_file_name("my-model.pth"), None); // "model" is not hex
        assert!(Checksum::md5("6CD6E144F989B92B3379BAC3B3DE84FD").is_ok());
        assert!(Checksum::md5("6cd6e1").is_err());
        assert!(Checksum::sha256("xyz12345").is_err());
    }

    #[test]
    fn verifies_known_digests_and_names_a_mismatch() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        std::fs::write(&p, b"abc").unwrap();
        // Standard test vectors for "abc".
        verify_file(&p, &Checksum::md5("900150983cd24fb0d6963f7d28e17f72").unwrap(), &NoProgress).unwrap();
        verify_file(&p, &Checksum::sha256("ba7816bf8f01cfea").unwrap(), &NoProgress).unwrap();
        verify_file(&p, &Checksum::Sha1("a9993e364706816aba3e25717850c26c9cd0d89d".into()), &NoProgress).unwrap();
        let err = verify_file(&p, &Checksum::Sha1("a9993e364706816aba3e25717850c26c9cd0d89e".into()), &NoProgress)
            .unwrap_err();
        assert!(err.to_string().contains("SHA-1"), "{err}");
        let err = verify_file(&p, &Checksum::sha256("ba7816bf8f01cfeb").unwrap(), &NoProgress).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("ba7816bf8f01cfeb") && msg.contains("ba7816bf8f01cfea414140de"), "{msg}");
    }
}
