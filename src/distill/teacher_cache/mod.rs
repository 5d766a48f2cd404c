//! The teacher cache: the frozen teacher's outputs computed once per training image, stored as f16
//! at the teacher's own resolution (stride 8 for FCN-ResNet50), and cut to each student view with
//! the same crop/flip/scale as the image — so a distillation step costs a file read and a bilinear
//! lookup instead of a ResNet-50 forward pass.
//!
//! * What is cached: the low-resolution logits (response KD) and the feature maps the feature
//!   distiller pairs with (feature KD), for the image resized so its shorter side is the training
//!   size (the augmentation's scale 1).
//! * Where: one file per image under `<dir>/<key>/`, the key hashing everything that determines the
//!   teacher's output (teacher kind and weights file, size, maps, dataset folder), so runs share a
//!   cache and a changed teacher never reads a stale one. Each entry also carries a stamp of the
//!   image file it was made from (length, time, hash of the bytes) and a checksum of its data: an
//!   image replaced in place, or a damaged entry, is rebuilt, never used. Files are written
//!   atomically: a stopped build resumes.
//! * How the targets differ from the live teacher's: the live teacher sees the colour-jittered
//!   crop and pads with zeros; the cache sees the whole clean image, so its targets carry context
//!   beyond the crop borders and padding repeats the image edge. [`tests`] and
//!   `tests/teacher_cache.rs` measure the agreement.

pub mod format;
pub mod manifest;
pub mod sample;

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use candle_core::{Device, Tensor};
use sha2::Digest as _;

use crate::data::transforms::{Geometry, Resize, normalize, resize_image};
use crate::data::{DataError, Dataset};
use crate::model::Model;
pub use format::{CachedImage, CachedMap, SourceStamp};

/// The name of the logits map in cache files.
pub const LOGITS: &str = "logits";

/// What to cache for a run.
#[derive(Clone, Debug, PartialEq)]
pub struct CacheSpec {
    /// The image resize the teacher sees (the training augmentation's scale 1).
    pub base: Resize,
    pub logits: bool,
    /// Teacher feature maps, with their strides relative to the input.
    pub features: Vec<(&'static str, usize)>,
}

/// The student-view targets of one batch, host-side, row-major.
#[derive(Clone, Debug, Default)]
pub struct TeacherTargets {
    /// (B, classes, H, W) at the batch's resolution.
    pub logits: Option<(Vec<f32>, [usize; 4])>,
    /// (B, C, ⌈H/stride⌉, ⌈W/stride⌉): the size the live teacher's map would have.
    pub features: Vec<(&'static str, Vec<f32>, [usize; 4])>,
}

/// The targets as tensors on `device`, ready for the losses.
pub struct TargetTensors {
    pub logits: Option<Tensor>,
    pub features: Vec<(&'static str, Tensor)>,
}

impl TeacherTargets {
    /// `self`'s images followed by `other`'s (the same maps, cut to the same size).
    pub fn joined(&self, other: &TeacherTargets) -> Result<TeacherTargets, DataError> {
        let cat = |what: &str, (a, da): (&Vec<f32>, &[usize; 4]), (b, db): (&Vec<f32>, &[usize; 4])| {
            if da[1..] != db[1..] {
                return Err(DataError::decode(
                    Path::new(what),
                    format!("teacher maps of {:?} and {:?} cannot form one batch", &da[1..], &db[1..]),
                ));
            }
            Ok(([a.as_slice(), b.as_slice()].concat(), [da[0] + db[0], da[1], da[2], da[3]]))
        };
        let logits = match (&self.logits, &other.logits) {
            (Some((a, da)), Some((b, db))) => Some(cat(LOGITS, (a, da), (b, db))?),
            (None, None) => None,
            _ => return Err(DataError::decode(Path::new(LOGITS), "teacher logits for only part of a batch")),
        };
        let mut features = Vec::with_capacity(self.features.len());
        for (name, a, da) in &self.features {
            let Some((_, b, db)) = other.features.iter().find(|(n, _, _)| n == name) else {
                return Err(DataError::decode(Path::new(name), "teacher features for only part of a batch"));
            };
            let (v, d) = cat(name, (a, da), (b, db))?;
            features.push((*name, v, d));
        }
        Ok(TeacherTargets { logits, features })
    }

    pub fn to_tensors(&self, device: &Device) -> candle_core::Result<TargetTensors> {
        let logits = match &self.logits {
            Some((v, shape)) => Some(Tensor::from_slice(v, shape.to_vec(), device)?),
            None => None,
        };
        let features = self
            .features
            .iter()
            .map(|(name, v, shape)| Ok((*name, Tensor::from_slice(v, shape.to_vec(), device)?)))
            .collect::<candle_core::Result<_>>()?;
        Ok(TargetTensors { logits, features })
    }
}

/// A built cache for one dataset, read by the data loader's workers.
#[derive(Clone, Debug)]
pub struct TeacherCache {
    dir: PathBuf,
    spec: CacheSpec,
    /// Sample id per dataset index.
    ids: Vec<String>,
    /// Images that could not be cached (undecodable): (dataset index, message). Training skips them.
    unusable: Vec<(usize, String)>,
}

impl TeacherCache {
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn entry_path(&self, index: usize) -> PathBuf {
        entry_path(&self.dir, &self.ids[index])
    }

    /// The images that could not be cached, as (dataset index, message); training skips them.
    pub fn unusable(&self) -> &[(usize, String)] {
        &self.unusable
    }

    /// Why sample `index` has no entry, when its image could not be cached.
    pub fn unusable_reason(&self, index: usize) -> Option<&str> {
        self.unusable.iter().find(|(i, _)| *i == index).map(|(_, m)| m.as_str())
    }

    /// Reads one image's entry, checking its checksum and that it belongs to an image of `size`
    /// (width, height). A damaged entry is deleted, so the next cache build makes it again.
    pub fn read(&self, index: usize, size: Option<(u32, u32)>) -> Result<CachedImage, DataError> {
        let path = self.entry_path(index);
        if let Ok(meta) = std::fs::symlink_metadata(&path)
            && !meta.file_type().is_file()
        {
            // Not a file the cache wrote: it is left alone, and the message says what it is.
            return Err(DataError::Decode {
                path: path.clone(),
                reason: format!(
                    "teacher cache entry is {}, not a file the cache wrote: remove it, and the run's next start \
                     rebuilds the entry",
                    crate::util::fs::describe_file_type(&meta.file_type())
                ),
            });
        }
        let img = CachedImage::read(&path).map_err(|reason| {
            std::fs::remove_file(&path).ok(); // rebuilt at the next start; gone is as good as damaged
            DataError::Decode {
                path: path.clone(),
                reason: format!(
                    "teacher cache entry: {reason}; it was deleted and is rebuilt when the run next starts"
                ),
            }
        })?;
        let names: Vec<&str> = img.maps.iter().map(|m| m.name.as_str()).collect();
        self.check_entry((img.src_width, img.src_height), &names, size).map_err(|reason| DataError::Decode {
            path: path.clone(),
            reason: format!("teacher cache entry: {reason}; the run's next start rebuilds it"),
        })?;
        Ok(img)
    }

    /// Whether entry `index` is whole (length and checksum), holds this cache's maps and was
    /// made from the current bytes of `image`.
    fn is_current(&self, index: usize, image: &Path) -> bool {
        format::Header::read_verified(&self.entry_path(index)).is_ok_and(|h| {
            let names: Vec<&str> = h.maps.iter().map(|m| m.0.as_str()).collect();
            self.check_entry((h.src_width, h.src_height), &names, None).is_ok() && h.source.matches_file(image)
        })
    }

    /// An entry made for an image of `made_for` holding maps `names` fits this cache (and the
    /// image of `size`, when given).
    fn check_entry(&self, made_for: (u32, u32), names: &[&str], size: Option<(u32, u32)>) -> Result<(), String> {
        if let Some((w, h)) = size
            && made_for != (w, h)
        {
            return Err(format!("made for a {}×{} image, the image is {w}×{h}", made_for.0, made_for.1));
        }
        match self.map_names().find(|n| !names.contains(n)) {
            Some(name) => Err(format!("no `{name}` map")),
            None => Ok(()),
        }
    }

    fn map_names(&self) -> impl Iterator<Item = &str> {
        self.spec.logits.then_some(LOGITS).into_iter().chain(self.spec.features.iter().map(|(n, _)| *n))
    }

    /// The targets for a batch of `(index, geometry)` items collated to `batch_h`×`batch_w`.
    pub fn targets(&self, items: &[(usize, Geometry)], batch_hw: (usize, usize)) -> Result<TeacherTargets, DataError> {
        let entries = items.iter().map(|(i, _)| self.read(*i, None)).collect::<Result<Vec<_>, _>>()?;
        self.targets_from(&entries, items, batch_hw)
    }

    /// Like [`TeacherCache::targets`], from entries already read (one per item, in order).
    pub fn targets_from(
        &self,
        entries: &[CachedImage],
        items: &[(usize, Geometry)],
        (batch_h, batch_w): (usize, usize),
    ) -> Result<TeacherTargets, DataError> {
        let b = items.len();
        for (entry, (i, g)) in entries.iter().zip(items) {
            let names: Vec<&str> = entry.maps.iter().map(|m| m.name.as_str()).collect();
            self.check_entry((entry.src_width, entry.src_height), &names, Some((g.src_width, g.src_height))).map_err(
                |reason| DataError::Decode {
                    path: self.entry_path(*i),
                    reason: format!("teacher cache entry: {reason}; the run's next start rebuilds it"),
                },
            )?;
        }
        // Maps of stride s are cut to the grid the live teacher's map would have for the batch:
        // ⌈H/s⌉×⌈W/s⌉ cells of s pixels (logits: full resolution).
        let sample_all = |name: &str, stride: usize| {
            let (out_h, out_w) = (batch_h.div_ceil(stride), batch_w.div_ceil(stride));
            let channels = entries.first().and_then(|e| e.map(name)).map_or(0, |m| m.channels);
            let per_item = channels * out_h * out_w;
            let mut data = vec![0f32; b * per_item];
            for ((entry, (_, g)), out) in entries.iter().zip(items).zip(data.chunks_mut(per_item.max(1))) {
                if let Some(map) = entry.map(name).filter(|m| m.channels == channels) {
                    let base = self.spec.base.size_for(g.src_width, g.src_height);
                    let view = sample::View { base, out: (out_h, out_w), out_cell: stride as f32 };
                    sample::sample_into(map, g, view, out);
                }
            }
            (data, [b, channels, out_h, out_w])
        };
        let logits = self.spec.logits.then(|| sample_all(LOGITS, 1));
        let features = self
            .spec
            .features
            .iter()
            .map(|&(name, stride)| {
                let (data, shape) = sample_all(name, stride);
                (name, data, shape)
            })
            .collect();
        Ok(TeacherTargets { logits, features })
    }
}

fn entry_path(dir: &Path, id: &str) -> PathBuf {
    // Ids are file stems (VOC) or relative paths (Cityscapes): flatten them into one folder.
    dir.join(format!("{}.tc", id.replace(['/', '\\'], "__")))
}

/// Where and how large a cache may be.
#[derive(Clone, Debug, PartialEq)]
pub struct CacheLocation {
    /// The parent folder; each teacher/dataset combination gets its own subfolder.
    pub root: PathBuf,
    /// Largest cache to build, in bytes.
    pub budget_bytes: u64,
}

/// How preparing the cache ended.
pub enum Prepared {
    Ready(TeacherCache),
    /// Not built; the reason says why and what to change (the run uses the live teacher).
    Skipped(String),
    /// The user stopped the run while the cache was being built (finished entries are kept).
    Stopped,
}

/// The key folder for a teacher, its weights, the spec and a dataset.
pub fn cache_dir(root: &Path, teacher: &Model, weights: &Path, spec: &CacheSpec, dataset: &Dataset) -> PathBuf {
    let meta = std::fs::metadata(weights).ok();
    let modified =
        meta.as_ref().and_then(|m| m.modified().ok()).and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok());
    let canonical = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
    let key = format!(
        "v{}|{}|{}|{}|{:?}|{:?}|{:?}|{}|{}",
        1,
        teacher.kind().name(),
        canonical(weights).display(),
        meta.map_or(0, |m| m.len()),
        modified.map(|d| d.as_nanos()),
        spec.base,
        spec.features,
        spec.logits,
        canonical(&dataset.root).display(),
    );
    let hash = sha2::Sha256::digest(key.as_bytes());
    let hex: String = hash.iter().take(8).map(|b| format!("{b:02x}")).collect();
    root.join(format!("{}-{hex}", teacher.kind().name()))
}

/// Bytes of one entry for an image of `w`×`h` (logits of `classes` channels; features with
/// `channels` from the teacher's taps).
fn entry_bytes(spec: &CacheSpec, (w, h): (u32, u32), classes: usize, channels: &dyn Fn(&str) -> usize) -> u64 {
    let (bw, bh) = spec.base.size_for(w, h);
    let cells = |stride: usize| (bw as usize).div_ceil(stride) * (bh as usize).div_ceil(stride);
    let logits = if spec.logits { classes * cells(8) } else { 0 };
    let features: usize = spec.features.iter().map(|&(n, s)| channels(n) * cells(s)).sum();
    2 * (logits + features) as u64 + 256
}

/// The teacher's maps for one normalised image (1, 3, H, W): low-resolution logits and features.
fn teacher_maps(teacher: &Model, x: &Tensor, spec: &CacheSpec) -> anyhow::Result<Vec<CachedMap>> {
    let (logits, features) = teacher.forward_low_res(x)?;
    let mut maps = Vec::new();
    let mut push = |name: &str, t: &Tensor| -> anyhow::Result<()> {
        let (_, c, h, w) = t.dims4()?;
        let values = t.flatten_all()?.to_dtype(candle_core::DType::F32)?.to_vec1::<f32>()?;
        maps.push(CachedMap::from_f32(name, (c, h, w), &values));
        Ok(())
    };
    if spec.logits {
        push(LOGITS, &logits)?;
    }
    for (name, _) in &spec.features {
        let t = features.iter().find(|(n, _)| n == name).map(|(_, t)| t);
        push(name, t.with_context(|| format!("the teacher has no `{name}` features"))?)?;
    }
    Ok(maps)
}

/// Builds (or completes) the cache for every image of `dataset`, reporting `(done, total)`.
/// Entries that are missing, damaged, or made from other bytes than the image now holds are
/// (re)built; images that cannot be decoded are left out and listed in [`TeacherCache::unusable`].
/// `keep_going` is polled between images; false stops the build.
#[allow(clippy::too_many_arguments)]
pub fn prepare(
    teacher: &Model,
    weights: &Path,
    dataset: &Dataset,
    spec: CacheSpec,
    location: &CacheLocation,
    device: &Device,
    progress: &mut dyn FnMut(usize, usize),
    keep_going: &dyn Fn() -> bool,
) -> anyhow::Result<Prepared> {
    let dir = cache_dir(&location.root, teacher, weights, &spec, dataset);
    // Temporary files of a build that was killed (a live process's are kept: runs share caches).
    crate::util::fs::remove_stale_temp_files(&dir);
    let ids: Vec<String> = dataset.samples.iter().map(|s| s.id.clone()).collect();
    let mut cache = TeacherCache { dir: dir.clone(), spec: spec.clone(), ids, unusable: Vec::new() };
    let total = dataset.len();
    // Every entry is read once to verify its checksum (no f16 decoding), on all cores.
    let current = crate::util::par::par_map(total, |i| cache.is_current(i, &dataset.samples[i].image));
    let missing: Vec<usize> = (0..total).filter(|&i| !current[i]).collect();
    if missing.is_empty() {
        return Ok(Prepared::Ready(cache));
    }
    // Size: measured on the first decodable image, scaled to the dataset (VOC images vary little).
    let Some(first) = missing.iter().find_map(|&i| dataset.load_image(i).ok()) else {
        cache.unusable = missing.iter().filter_map(|&i| Some((i, dataset.load_image(i).err()?.to_string()))).collect();
        return Ok(Prepared::Ready(cache));
    };
    let taps = teacher.feature_taps();
    let channels = |n: &str| taps.iter().find(|t| t.name == n).map_or(0, |t| t.channels);
    let per_entry = entry_bytes(&spec, first.dimensions(), teacher.num_classes(), &channels);
    let need = per_entry * total as u64;
    let human = crate::util::fmt::human_bytes;
    if need > location.budget_bytes {
        return Ok(Prepared::Skipped(format!(
            "the teacher cache would take about {} (over the {} budget); training runs the teacher live — raise \
             the cache budget to cache it",
            human(need),
            human(location.budget_bytes)
        )));
    }
    let to_write = per_entry * missing.len() as u64;
    let need_free = to_write + to_write / 10;
    match crate::util::fs::free_space(&dir) {
        Ok(have) if have < need_free => {
            return Ok(Prepared::Skipped(format!(
                "no teacher cache: {} needs {}, {} free; training runs the teacher live",
                dir.display(),
                human(need_free),
                human(have)
            )));
        }
        Ok(_) => {}
        Err(e) => {
            return Ok(Prepared::Skipped(format!(
                "no teacher cache: cannot tell the free space of {} ({e}); training runs the teacher live",
                dir.display()
            )));
        }
    }
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    if manifest::Manifest::read(&dir).is_none()
        && let Some((teacher_len, teacher_modified_ns)) = manifest::file_stamp(weights)
    {
        let m = manifest::Manifest {
            teacher_model: teacher.kind().name().to_string(),
            teacher_weights: crate::util::fs::absolute(weights),
            teacher_len,
            teacher_modified_ns,
            dataset: crate::util::fs::absolute(&dataset.root),
        };
        m.write(&dir).ok(); // only `cache list` reads it; the cache works without it
    }
    let done_before = total - missing.len();
    progress(done_before, total);
    for (k, &i) in missing.iter().enumerate() {
        if !keep_going() {
            return Ok(Prepared::Stopped);
        }
        let image_path = &dataset.samples[i].image;
        let decoded = dataset.load_image(i).and_then(|img| {
            let stamp = SourceStamp::of_file(image_path).map_err(|e| DataError::io(image_path, e))?;
            Ok((img, stamp))
        });
        let (sample, source) = match decoded {
            Ok(v) => v,
            Err(e) => {
                cache.unusable.push((i, e.to_string()));
                progress(done_before + k + 1, total);
                continue;
            }
        };
        let (w, h) = sample.dimensions();
        let (bw, bh) = spec.base.size_for(w, h);
        let x = Tensor::from_vec(normalize(&resize_image(&sample, bw, bh)), (1, 3, bh as usize, bw as usize), device)?;
        let entry = CachedImage { src_width: w, src_height: h, source, maps: teacher_maps(teacher, &x, &spec)? };
        let path = cache.entry_path(i);
        if let Ok(meta) = std::fs::symlink_metadata(&path)
            && !meta.file_type().is_file()
        {
            return Ok(Prepared::Skipped(format!(
                "the teacher cache entry {} is {}, not a file the cache wrote; training runs the teacher live \
                 (remove it to let the cache be built)",
                path.display(),
                crate::util::fs::describe_file_type(&meta.file_type())
            )));
        }
        if let Err(e) = crate::util::fs::write_atomic(&path, &entry.encode()) {
            return Ok(Prepared::Skipped(format!(
                "cannot write the teacher cache entry {}: {e}; training runs the teacher live (free some space, or \
                 turn the cache off)",
                path.display()
            )));
        }
        progress(done_before + k + 1, total);
    }
    Ok(Prepared::Ready(cache))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_size_counts_logits_and_features_at_their_strides() {
        let spec =
            CacheSpec { base: Resize::ShorterSide(256), logits: true, features: vec![("layer1", 4), ("layer4", 8)] };
        // 500×375 → 341×256 → stride 8: 43×32 cells, stride 4: 86×64.
        let bytes = entry_bytes(&spec, (500, 375), 21, &|n| if n == "layer1" { 256 } else { 2048 });
        assert_eq!(bytes, 2 * (21 * 43 * 32 + 256 * 86 * 64 + 2048 * 43 * 32) as u64 + 256);
    }
}
