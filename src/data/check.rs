//! Validation of a dataset split: which samples are usable, which are broken and why, plus the
//! statistics a user wants before training (sizes, class pixel histogram).

use super::classes::VOID;
use super::dataset::{Dataset, DatasetKind};
use super::error::DataError;
use super::image::read_rgb;
use super::voc::{self, DuplicateId};

/// A problem with one sample, or with the split list itself (`id` is then the listed id the
/// problem is about, e.g. a repeated one).
#[derive(Debug)]
pub struct Problem {
    pub id: String,
    pub error: DataError,
}

impl Problem {
    /// A repeated id: the split uses it once, but the file should be fixed, and a user who
    /// meant two different images must hear about it.
    fn duplicate(d: &DuplicateId) -> Self {
        Self { id: d.id.clone(), error: d.to_error() }
    }
}

/// The outcome of checking every sample of a split.
#[derive(Debug, Default)]
pub struct CheckReport {
    /// Ids listed in the split.
    pub listed: usize,
    /// Samples whose image and mask decode, match in size and carry only known labels.
    pub usable: usize,
    /// Every problem found (a sample can have several), in split order.
    pub problems: Vec<Problem>,
    /// Smallest and largest image (width, height) among decoded images.
    pub min_size: Option<(u32, u32)>,
    pub max_size: Option<(u32, u32)>,
    /// Pixels per class over usable samples.
    pub class_pixels: Vec<u64>,
    pub void_pixels: u64,
}

impl CheckReport {
    pub fn is_fully_usable(&self) -> bool {
        self.problems.is_empty() && self.usable == self.listed && self.listed > 0
    }

    /// Problems grouped by kind, in a stable order, with their count.
    pub fn problems_by_kind(&self) -> Vec<(&'static str, Vec<&Problem>)> {
        let mut groups: Vec<(&'static str, Vec<&Problem>)> = Vec::new();
        for p in &self.problems {
            let k = p.error.kind();
            match groups.iter_mut().find(|(kind, _)| *kind == k) {
                Some((_, v)) => v.push(p),
                None => groups.push((k, vec![p])),
            }
        }
        groups
    }

    fn absorb(&mut self, other: CheckReport) {
        self.usable += other.usable;
        self.problems.extend(other.problems);
        self.min_size = min_max(self.min_size, other.min_size, u32::min);
        self.max_size = min_max(self.max_size, other.max_size, u32::max);
        if self.class_pixels.len() < other.class_pixels.len() {
            self.class_pixels.resize(other.class_pixels.len(), 0);
        }
        for (a, b) in self.class_pixels.iter_mut().zip(&other.class_pixels) {
            *a += b;
        }
        self.void_pixels += other.void_pixels;
    }
}

fn min_max(a: Option<(u32, u32)>, b: Option<(u32, u32)>, f: fn(u32, u32) -> u32) -> Option<(u32, u32)> {
    match (a, b) {
        (Some(x), Some(y)) => Some((f(x.0, y.0), f(x.1, y.1))),
        (x, None) => x,
        (None, y) => y,
    }
}

/// Checks one sample, recording every problem (a missing image does not hide a broken mask).
fn check_sample(ds: &Dataset, index: usize, report: &mut CheckReport) {
    let files = &ds.samples[index];
    let problems_before = report.problems.len();
    let mut push = |error: DataError| report.problems.push(Problem { id: files.id.clone(), error });

    // A plain folder pairs files by stem: a lone file is named as the one without a partner.
    let folder = ds.kind == DatasetKind::Folder;
    let (has_image, has_mask) = (files.image.is_file(), files.mask.is_file());
    if folder && !has_image && !has_mask {
        return; // a split line naming neither file: reported with its line number
    }
    let image = if has_image {
        read_rgb(&files.image).map_err(&mut push).ok()
    } else if folder && has_mask {
        let images = ds.root.join(super::folder::IMAGES_DIR);
        push(DataError::MaskWithoutImage { mask: files.mask.clone(), stem: files.id.clone(), images });
        None
    } else {
        push(DataError::MissingFile { what: "image", id: files.id.clone(), path: files.image.clone() });
        None
    };
    let mask = if has_mask {
        ds.read_mask_file(&files.mask).map_err(&mut push).ok()
    } else if folder && has_image {
        push(DataError::ImageWithoutMask { image: files.image.clone(), expected: files.mask.clone() });
        None
    } else {
        push(DataError::MissingFile { what: "mask", id: files.id.clone(), path: files.mask.clone() });
        None
    };
    if let Some(img) = &image {
        let d = img.dimensions();
        report.min_size = min_max(report.min_size, Some(d), u32::min);
        report.max_size = min_max(report.max_size, Some(d), u32::max);
    }
    if let (Some(img), Some(m)) = (&image, &mask)
        && let Some(error) = files.size_mismatch(img, m)
    {
        report.problems.push(Problem { id: files.id.clone(), error });
    }
    if report.problems.len() == problems_before
        && let Some(m) = mask
    {
        report.usable += 1;
        let hist = m.histogram();
        for (c, n) in report.class_pixels.iter_mut().enumerate() {
            *n += hist[c];
        }
        report.void_pixels += hist[VOID as usize];
    }
}

/// Problems of the split list itself, before any sample's: ids its file repeats (VOC lists;
/// Cityscapes splits are folders, which cannot repeat a frame); for a plain folder also images
/// without a mask, masks without an image and split lines naming neither.
fn split_list_problems(ds: &Dataset) -> Vec<Problem> {
    if let Some(info) = ds.folder_info() {
        return super::folder::folder_problems(&ds.root, &ds.split, info, &ds.samples)
            .into_iter()
            .map(|(id, error)| Problem { id, error })
            .collect();
    }
    if ds.kind != DatasetKind::Voc {
        return Vec::new();
    }
    match voc::read_split_list(&ds.root, &ds.split) {
        Ok(list) => list.duplicates.iter().map(Problem::duplicate).collect(),
        // Read when the dataset was opened; failing now means it changed since: say so.
        Err(error) => vec![Problem { id: ds.split.clone(), error }],
    }
}

/// Checks every sample of `ds` on all cores; `on_sample` is called after each one (progress).
pub fn check_dataset(ds: &Dataset, on_sample: &(dyn Fn() + Sync)) -> CheckReport {
    let empty = || CheckReport { class_pixels: vec![0; ds.num_classes()], ..Default::default() };
    let parts = crate::util::par::par_map(ds.len(), |i| {
        let mut r = empty();
        check_sample(ds, i, &mut r);
        on_sample();
        r
    });
    let mut report = CheckReport { listed: ds.len(), problems: split_list_problems(ds), ..empty() };
    for r in parts {
        report.absorb(r);
    }
    report
}
