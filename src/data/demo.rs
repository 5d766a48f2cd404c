//! The demo dataset: procedurally drawn scenes in the VOC 2012 on-disk format (JPEG images,
//! palette PNG masks with void borders, `ImageSets/Segmentation` lists), so the app and the tests
//! work out of the box without downloading VOC.
//!
//! Each of the 20 object classes has its own shape, hue and texture; objects are scattered over
//! a low-saturation textured background (class 0) and may overlap. Colours and textures make the
//! classes separable for a small network in minutes on a CPU, while overlaps, random sizes,
//! rotations and JPEG noise keep it from being trivial.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use image::{Rgb, RgbImage};
use serde::{Deserialize, Serialize};

use super::classes::VOID;
use super::image::encode_jpeg;
use super::mask::{Mask, encode_palette_png};
use crate::util::Rng;
use crate::util::fs::write_atomic;

/// What to generate.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct DemoConfig {
    /// Labelled training images (`train` split).
    pub train: usize,
    pub val: usize,
    /// Images without masks beside them (the `unlabeled` split: JPEGs with no mask), for
    /// distillation on unlabelled images.
    pub unlabeled: usize,
    /// Image width in pixels; heights vary between 70 % and 100 % of it, as in VOC.
    pub size: u32,
    pub seed: u64,
    pub difficulty: Difficulty,
}

impl Default for DemoConfig {
    /// The classic demo: 300 labelled images of easy scenes.
    fn default() -> Self {
        Self { train: 300, val: 60, unlabeled: 0, size: 160, seed: 0, difficulty: Difficulty::Easy }
    }
}

impl DemoConfig {
    /// What `demo-data` and the app write by default, and the first run trains on: few labels
    /// (150 images with masks) and three times as many images without them, where a teacher
    /// trained on the labels has something to teach a compact student; 100 validation images;
    /// 128 pixels, so that a teacher and a distilled student train in minutes on two CPU cores.
    /// (On the hard scenes the teacher recipe does not lead the compact student: see
    /// docs/distillation.md.)
    pub fn first_run() -> Self {
        Self { train: 150, val: 100, unlabeled: 450, size: 128, seed: 0, difficulty: Difficulty::Easy }
    }

    /// Images drawn in all.
    pub fn images(&self) -> usize {
        self.train + self.val + self.unlabeled
    }

    /// "120 train + 200 val images and 480 without masks (128 px wide, hard scenes)".
    pub fn in_words(&self) -> String {
        let unlabeled = match self.unlabeled {
            0 => String::new(),
            n => format!(" and {n} without masks"),
        };
        let difficulty = match self.difficulty {
            Difficulty::Easy => "easy",
            Difficulty::Hard => "hard",
        };
        format!(
            "{} train + {} val images{unlabeled} ({} px wide, {difficulty} scenes)",
            self.train, self.val, self.size
        )
    }
}

/// How hard the scenes are to segment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Difficulty {
    /// One to four large objects; every class has its own shape, hue and texture.
    #[default]
    Easy,
    /// Three to seven objects, many small, overlapping one another; each class shares its shape
    /// and hue with another class and differs from it by its texture alone (stripes against
    /// waves, dots against checks): a benchmark that takes fine detail and many labels (with
    /// 120 labelled images neither the teacher recipe nor the compact student passes 0.45 mIoU).
    Hard,
}

/// The marker file written next to the generated data.
pub const MARKER_FILE: &str = "segdistill-demo.json";

#[derive(Clone, Copy, Debug)]
enum Shape {
    Circle,
    Ellipse,
    Square,
    Triangle,
    Diamond,
    Star,
    Ring,
    Cross,
    Hexagon,
    Crescent,
}

const SHAPES: [Shape; 10] = [
    Shape::Circle,
    Shape::Ellipse,
    Shape::Square,
    Shape::Triangle,
    Shape::Diamond,
    Shape::Star,
    Shape::Ring,
    Shape::Cross,
    Shape::Hexagon,
    Shape::Crescent,
];

impl Shape {
    /// Whether local coordinates (u, v) (object radius = 1) are inside the shape.
    fn contains(self, u: f32, v: f32) -> bool {
        let r2 = u * u + v * v;
        match self {
            Self::Circle => r2 <= 1.0,
            Self::Ellipse => u * u + (v / 0.55) * (v / 0.55) <= 1.0,
            Self::Square => u.abs() <= 0.75 && v.abs() <= 0.75,
            Self::Triangle => v <= 0.5 && v >= -1.0 + 1.732 * u.abs(),
            Self::Diamond => u.abs() + v.abs() <= 1.0,
            Self::Star => {
                let phi = v.atan2(u);
                r2.sqrt() <= 0.5 + 0.5 * (0.5 + 0.5 * (5.0 * phi).cos())
            }
            Self::Ring => (0.3..=1.0).contains(&r2),
            Self::Cross => (u.abs() <= 0.3 && v.abs() <= 1.0) || (v.abs() <= 0.3 && u.abs() <= 1.0),
            Self::Hexagon => (u.abs() * 0.866 + v.abs() * 0.5).max(v.abs()) <= 0.9,
            Self::Crescent => r2 <= 1.0 && (u - 0.45) * (u - 0.45) + v * v > 0.56,
        }
    }
}

#[derive(Clone, Copy, Debug)]
enum Texture {
    Solid,
    Stripes,
    Checker,
    Dots,
    Waves,
}

const TEXTURES: [Texture; 5] = [Texture::Solid, Texture::Stripes, Texture::Checker, Texture::Dots, Texture::Waves];

impl Texture {
    /// Brightness modulation in [0, 1] at object-local pixel offsets (x, y).
    fn value(self, x: f32, y: f32, period: f32) -> f32 {
        let f = std::f32::consts::TAU / period;
        match self {
            Self::Solid => 0.5,
            Self::Stripes => 0.5 + 0.5 * (x * f).sin(),
            Self::Checker => {
                if ((x / period).floor() as i64 + (y / period).floor() as i64) % 2 == 0 {
                    1.0
                } else {
                    0.0
                }
            }
            Self::Dots => {
                let (dx, dy) = ((x / period).fract() - 0.5, (y / period).fract() - 0.5);
                if dx * dx + dy * dy < 0.09 { 0.0 } else { 1.0 }
            }
            Self::Waves => 0.5 + 0.5 * (x * f + 2.0 * (y * f * 0.5).sin()).sin(),
        }
    }
}

/// The look of one object class (1–20).
struct ClassStyle {
    shape: Shape,
    texture: Texture,
    hue: f32,
    period: f32,
}

fn class_style(class: u8, difficulty: Difficulty) -> ClassStyle {
    let k = (class - 1) as usize;
    let hue = match difficulty {
        // Classes sharing a shape differ in texture and sit half the hue circle apart.
        Difficulty::Easy => (k as f32 * 18.0 + if k >= 10 { 9.0 } else { 0.0 }) % 360.0,
        // … or share the hue too: the texture alone tells them apart.
        Difficulty::Hard => ((k % SHAPES.len()) as f32 * 36.0) % 360.0,
    };
    ClassStyle {
        shape: SHAPES[k % SHAPES.len()],
        texture: TEXTURES[(k + k / SHAPES.len() * 2) % TEXTURES.len()],
        hue,
        period: 5.0 + (k % 4) as f32 * 2.0,
    }
}

fn hsv_to_rgb(h: f32, s: f32, v: f32) -> [f32; 3] {
    let h = h.rem_euclid(360.0) / 60.0;
    let c = v * s;
    let x = c * (1.0 - (h % 2.0 - 1.0).abs());
    let (r, g, b) = match h as u32 {
        0 => (c, x, 0.0),
        1 => (x, c, 0.0),
        2 => (0.0, c, x),
        3 => (0.0, x, c),
        4 => (x, 0.0, c),
        _ => (c, 0.0, x),
    };
    let m = v - c;
    [(r + m) * 255.0, (g + m) * 255.0, (b + m) * 255.0]
}

/// Draws one scene of `width`×`height`: image and mask (void along object borders).
pub fn render_scene(width: u32, height: u32, difficulty: Difficulty, rng: &mut Rng) -> (RgbImage, Mask) {
    let mut canvas = vec![[0f32; 3]; (width * height) as usize];
    let mut mask = Mask::filled(width, height, 0);
    draw_background(&mut canvas, width, height, rng);
    let (objects, radius) = match difficulty {
        Difficulty::Easy => (1 + rng.below(4) as usize, (0.12, 0.32)),
        Difficulty::Hard => (3 + rng.below(5) as usize, (0.07, 0.24)),
    };
    for _ in 0..objects {
        let class = 1 + rng.below(20) as u8;
        draw_object(&mut canvas, &mut mask, class, difficulty, radius, rng);
    }
    mark_void_borders(&mut mask);
    let noise = match difficulty {
        Difficulty::Easy => rng.uniform(2.0, 8.0),
        Difficulty::Hard => rng.uniform(4.0, 12.0),
    };
    let image = RgbImage::from_fn(width, height, |x, y| {
        let c = canvas[(y * width + x) as usize];
        Rgb(std::array::from_fn(|i| (c[i] + noise * rng.normal()).round().clamp(0.0, 255.0) as u8))
    });
    (image, mask)
}

fn draw_background(canvas: &mut [[f32; 3]], width: u32, height: u32, rng: &mut Rng) {
    // A desaturated gradient with soft blotches: unlike any object's saturated colour.
    let hue = rng.uniform(0.0, 360.0);
    let (v0, v1) = (rng.uniform(0.25, 0.85), rng.uniform(0.25, 0.85));
    let sat = rng.uniform(0.0, 0.18);
    let angle = rng.uniform(0.0, std::f32::consts::TAU);
    let (ca, sa) = (angle.cos(), angle.sin());
    let blobs: Vec<(f32, f32, f32, f32)> = (0..6)
        .map(|_| {
            (
                rng.uniform(0.0, width as f32),
                rng.uniform(0.0, height as f32),
                rng.uniform(8.0, width as f32 / 3.0),
                rng.uniform(-0.15, 0.15),
            )
        })
        .collect();
    let diag = (width as f32).hypot(height as f32);
    for y in 0..height {
        for x in 0..width {
            let t = 0.5 + ((x as f32 - width as f32 / 2.0) * ca + (y as f32 - height as f32 / 2.0) * sa) / diag;
            let mut v = v0 + (v1 - v0) * t;
            for &(bx, by, br, bd) in &blobs {
                let d2 = ((x as f32 - bx).powi(2) + (y as f32 - by).powi(2)) / (br * br);
                v += bd * (-d2).exp();
            }
            canvas[(y * width + x) as usize] = hsv_to_rgb(hue, sat, v.clamp(0.05, 0.95));
        }
    }
}

fn draw_object(
    canvas: &mut [[f32; 3]],
    mask: &mut Mask,
    class: u8,
    difficulty: Difficulty,
    (r0, r1): (f32, f32),
    rng: &mut Rng,
) {
    let style = class_style(class, difficulty);
    let (w, h) = (mask.width as f32, mask.height as f32);
    let radius = rng.uniform(r0, r1) * w.min(h);
    let (cx, cy) = (rng.uniform(radius * 0.3, w - radius * 0.3), rng.uniform(radius * 0.3, h - radius * 0.3));
    let theta = rng.uniform(0.0, std::f32::consts::TAU);
    let (ct, st) = (theta.cos(), theta.sin());
    let hue = style.hue + rng.uniform(-6.0, 6.0);
    let sat = rng.uniform(0.65, 0.95);
    let val = rng.uniform(0.6, 0.95);
    let contrast = rng.uniform(0.25, 0.45);
    let x0 = (cx - radius).floor().max(0.0) as u32;
    let x1 = ((cx + radius).ceil() as u32).min(mask.width - 1);
    let y0 = (cy - radius).floor().max(0.0) as u32;
    let y1 = ((cy + radius).ceil() as u32).min(mask.height - 1);
    for y in y0..=y1 {
        for x in x0..=x1 {
            let (dx, dy) = (x as f32 + 0.5 - cx, y as f32 + 0.5 - cy);
            let (lx, ly) = (dx * ct + dy * st, -dx * st + dy * ct);
            if !style.shape.contains(lx / radius, ly / radius) {
                continue;
            }
            let t = style.texture.value(lx + 100.0, ly + 100.0, style.period);
            let v = (val * (1.0 - contrast + 2.0 * contrast * t)).clamp(0.0, 1.0);
            canvas[(y * mask.width + x) as usize] = hsv_to_rgb(hue, sat, v);
            mask.set(x, y, class);
        }
    }
}

/// Marks pixels next to a different label as void, like VOC's object outlines.
fn mark_void_borders(mask: &mut Mask) {
    let (w, h) = (mask.width as i64, mask.height as i64);
    let src = mask.data.clone();
    for y in 0..h {
        for x in 0..w {
            let c = src[(y * w + x) as usize];
            let border = [(-1, 0), (1, 0), (0, -1), (0, 1)].iter().any(|&(dx, dy)| {
                let (nx, ny) = (x + dx, y + dy);
                nx >= 0 && ny >= 0 && nx < w && ny < h && src[(ny * w + nx) as usize] != c
            });
            if border {
                mask.data[(y * w + x) as usize] = VOID;
            }
        }
    }
}

/// The `VOC2012` folder a generated dataset lives in.
pub fn voc_root(out: &Path) -> PathBuf {
    out.join("VOCdevkit").join("VOC2012")
}

/// Writes the demo dataset under `out/VOCdevkit/VOC2012`; `on_image` is called after each
/// image (progress). Returns the `VOC2012` folder.
/// Largest image width the generator draws (beyond this, memory rather than a message would stop it).
pub const MAX_SIZE: u32 = 4096;
const MAX_IMAGES: usize = 1_000_000;

/// Refuses sizes and counts the generator cannot draw, with the accepted range.
pub(crate) fn check_config(config: &DemoConfig) -> anyhow::Result<()> {
    anyhow::ensure!(
        (32..=MAX_SIZE).contains(&config.size),
        "--size must be 32 to {MAX_SIZE} pixels (got {})",
        config.size
    );
    anyhow::ensure!(config.train + config.val > 0, "nothing to generate: --train and --val are both 0");
    let images = config.train.saturating_add(config.val).saturating_add(config.unlabeled);
    anyhow::ensure!(images <= MAX_IMAGES, "{images} images asked for; the demo dataset holds at most {MAX_IMAGES}");
    Ok(())
}

/// Generates the demo dataset under `out` (`out/VOCdevkit/VOC2012`), replacing one that is there.
pub fn generate(out: &Path, config: &DemoConfig, on_image: &(dyn Fn() + Sync)) -> anyhow::Result<PathBuf> {
    check_config(config)?;
    let root = voc_root(out);
    write_staged(&root, |staging| draw_into(staging, config, on_image))?;
    Ok(root)
}

/// Draws a dataset into a staging folder beside `root` and moves it into place under a lock, so
/// that two writers (or a kill half-way) never leave a mix of two datasets, and a failed run
/// leaves the old one whole.
pub(crate) fn write_staged(root: &Path, draw: impl FnOnce(&Path) -> anyhow::Result<()>) -> anyhow::Result<()> {
    let parent = root.parent().context("the dataset folder has no parent")?;
    let name = root.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    std::fs::create_dir_all(parent).with_context(|| format!("cannot create {}", parent.display()))?;
    let lock_path = parent.join(format!(".{name}.demo-data.lock"));
    let lock = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(&lock_path)
        .with_context(|| format!("cannot open {}", lock_path.display()))?;
    match lock.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => anyhow::bail!(
            "another demo-data is writing {} right now; wait for it to end, or choose another folder",
            root.display()
        ),
        Err(std::fs::TryLockError::Error(e)) if e.kind() == std::io::ErrorKind::Unsupported => {}
        Err(std::fs::TryLockError::Error(e)) => anyhow::bail!("cannot lock {}: {e}", lock_path.display()),
    }
    let (staging_prefix, old_prefix) = (format!(".{name}.staging-"), format!(".{name}.old-"));
    if let Ok(rd) = std::fs::read_dir(parent) {
        for e in rd.flatten() {
            let n = e.file_name().to_string_lossy().into_owned();
            if n.starts_with(&staging_prefix) || n.starts_with(&old_prefix) {
                std::fs::remove_dir_all(e.path()).ok(); // best effort: only this tool's own leftovers
            }
        }
    }
    let staging = parent.join(format!("{staging_prefix}{}", std::process::id()));
    if let Err(e) = draw(&staging) {
        std::fs::remove_dir_all(&staging).ok(); // half-drawn: nothing in it is anyone's
        return Err(e);
    }
    let old = parent.join(format!("{old_prefix}{}", std::process::id()));
    let replaced = root.exists();
    if replaced {
        std::fs::rename(root, &old).with_context(|| format!("cannot move the old {} aside", root.display()))?;
    }
    std::fs::rename(&staging, root).with_context(|| format!("cannot move the new dataset to {}", root.display()))?;
    if replaced {
        std::fs::remove_dir_all(&old).ok(); // replaced; a leftover is removed by the next run
    }
    drop(lock);
    Ok(())
}

/// Draws the whole dataset into `root` (a VOC2012 layout).
fn draw_into(root: &Path, config: &DemoConfig, on_image: &(dyn Fn() + Sync)) -> anyhow::Result<()> {
    let root = root.to_path_buf();
    for dir in ["JPEGImages", "SegmentationClass", "ImageSets/Segmentation"] {
        let d = root.join(dir);
        std::fs::create_dir_all(&d).with_context(|| format!("cannot create {}", d.display()))?;
    }
    let total = config.train + config.val;
    let ids: Vec<String> = (0..total).map(|i| format!("demo_{:06}", i + 1)).collect();
    let written = crate::util::par::par_map(total + config.unlabeled, |i| {
        let r = if i < total {
            write_sample(&root, &ids[i], config, i)
        } else {
            // Unlabelled: a JPEG with no mask, in no split list (the `unlabeled` split).
            write_image(&root.join("JPEGImages").join(format!("demo_{:06}.jpg", i + 1)), config, i)
        };
        on_image();
        r
    });
    written.into_iter().collect::<anyhow::Result<Vec<()>>>()?;
    let lists = root.join("ImageSets/Segmentation");
    let (train, val) = ids.split_at(config.train);
    for (name, part) in [("train", train), ("val", val), ("trainval", &ids[..])] {
        let text: String = part.iter().map(|id| format!("{id}\n")).collect();
        let p = lists.join(format!("{name}.txt"));
        write_atomic(&p, text.as_bytes()).with_context(|| format!("cannot write {}", p.display()))?;
    }
    let marker = root.join(MARKER_FILE);
    write_atomic(&marker, serde_json::to_string_pretty(config)?.as_bytes())
        .with_context(|| format!("cannot write {}", marker.display()))?;
    Ok(())
}

fn write_sample(root: &Path, id: &str, config: &DemoConfig, index: usize) -> anyhow::Result<()> {
    let jpg = root.join("JPEGImages").join(format!("{id}.jpg"));
    let png = root.join("SegmentationClass").join(format!("{id}.png"));
    write_sample_to(&jpg, &png, config, index)
}

/// Draws sample `index` of a dataset (the same scene in every layout): image and VOC-class mask.
pub(crate) fn draw_sample(config: &DemoConfig, index: usize) -> (RgbImage, Mask) {
    let mut rng = Rng::for_item(config.seed, 0xDE30, index as u64);
    let width = config.size;
    let height = ((config.size as f32 * rng.uniform(0.7, 1.0)).round() as u32).max(16);
    render_scene(width, height, config.difficulty, &mut rng)
}

/// Draws scene `index` and writes its image alone (JPEG) to `jpg`.
fn write_image(jpg: &Path, config: &DemoConfig, index: usize) -> anyhow::Result<()> {
    let (image, _) = draw_sample(config, index);
    write_atomic(jpg, &encode_jpeg(&image, 92)?).with_context(|| format!("cannot write {}", jpg.display()))
}

/// Draws sample `index` and writes its image (JPEG) to `jpg` and its mask (VOC palette PNG) to `png`.
fn write_sample_to(jpg: &Path, png: &Path, config: &DemoConfig, index: usize) -> anyhow::Result<()> {
    let (image, mask) = draw_sample(config, index);
    write_atomic(jpg, &encode_jpeg(&image, 92)?).with_context(|| format!("cannot write {}", jpg.display()))?;
    let palette = super::classes::voc_palette();
    write_atomic(png, &encode_palette_png(&mask, &palette)?)
        .with_context(|| format!("cannot write {}", png.display()))?;
    Ok(())
}

/// Generates the demo dataset in the plain-folder layout right in `out`: `images/*.jpg`,
/// `masks/*.png` (palette PNGs), `classes.txt` (the 21 VOC classes with their colours),
/// `train.txt` and `val.txt`. Files of an earlier folder demo there are replaced; the new ones are
/// drawn into a staging folder first, so a failed run leaves the old ones whole. Returns `out`.
pub fn generate_folder(out: &Path, config: &DemoConfig, on_image: &(dyn Fn() + Sync)) -> anyhow::Result<PathBuf> {
    check_config(config)?;
    use super::folder::{CLASSES_TXT, IMAGES_DIR, MASKS_DIR};
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let staging = out.join(format!(".folder-demo.staging-{}", std::process::id()));
    let drawn = draw_folder_into(&staging, config, on_image);
    if let Err(e) = drawn {
        std::fs::remove_dir_all(&staging).ok(); // half-drawn: nothing in it is anyone's
        return Err(e);
    }
    for name in [IMAGES_DIR, MASKS_DIR, CLASSES_TXT, "train.txt", "val.txt", MARKER_FILE] {
        let (from, to) = (staging.join(name), out.join(name));
        if to.is_dir() {
            std::fs::remove_dir_all(&to).with_context(|| format!("cannot replace {}", to.display()))?;
        }
        std::fs::rename(&from, &to).with_context(|| format!("cannot move the new {name} to {}", to.display()))?;
    }
    std::fs::remove_dir_all(&staging).ok();
    Ok(out.to_path_buf())
}

/// The demo's classes as a `classes.txt`: `name r g b` per line.
pub fn folder_classes_txt() -> String {
    super::classes::VOC_CLASS_NAMES
        .iter()
        .enumerate()
        .map(|(i, n)| {
            let [r, g, b] = super::classes::voc_color(i as u8);
            format!("{n} {r} {g} {b}\n")
        })
        .collect()
}

fn draw_folder_into(dir: &Path, config: &DemoConfig, on_image: &(dyn Fn() + Sync)) -> anyhow::Result<()> {
    let (images, masks) = (dir.join(super::folder::IMAGES_DIR), dir.join(super::folder::MASKS_DIR));
    for d in [&images, &masks] {
        std::fs::create_dir_all(d).with_context(|| format!("cannot create {}", d.display()))?;
    }
    let total = config.train + config.val;
    let ids: Vec<String> = (0..total + config.unlabeled).map(|i| format!("demo_{:06}", i + 1)).collect();
    let written = crate::util::par::par_map(total + config.unlabeled, |i| {
        let image = images.join(format!("{}.jpg", ids[i]));
        // Images past the labelled ones have no mask: the folder's `unlabeled` split.
        let r = if i < total {
            write_sample_to(&image, &masks.join(format!("{}.png", ids[i])), config, i)
        } else {
            write_image(&image, config, i)
        };
        on_image();
        r
    });
    written.into_iter().collect::<anyhow::Result<Vec<()>>>()?;
    let (train, val) = ids[..total].split_at(config.train);
    for (name, part) in [("train", train), ("val", val)] {
        let text: String = part.iter().map(|id| format!("{id}\n")).collect();
        let p = dir.join(format!("{name}.txt"));
        write_atomic(&p, text.as_bytes()).with_context(|| format!("cannot write {}", p.display()))?;
    }
    let classes = dir.join(super::folder::CLASSES_TXT);
    write_atomic(&classes, folder_classes_txt().as_bytes())
        .with_context(|| format!("cannot write {}", classes.display()))?;
    let marker = dir.join(MARKER_FILE);
    write_atomic(&marker, serde_json::to_string_pretty(config)?.as_bytes())
        .with_context(|| format!("cannot write {}", marker.display()))?;
    Ok(())
}

/// True if `voc_root` holds a generated demo dataset.
pub fn is_demo(voc_root: &Path) -> bool {
    voc_root.join(MARKER_FILE).is_file()
}

/// True if the dataset a user points at (`--data`: the folder itself, a VOCdevkit or a parent of
/// it) is a generated demo dataset, in either layout.
pub fn is_demo_dataset(data: &Path) -> bool {
    is_demo(data) || super::voc::find_root(data).is_ok_and(|root| is_demo(&root))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scenes_are_deterministic_and_use_classes_and_void() {
        let a = render_scene(96, 72, Difficulty::Easy, &mut Rng::new(4));
        let b = render_scene(96, 72, Difficulty::Easy, &mut Rng::new(4));
        assert_eq!(a.0, b.0);
        assert_eq!(a.1, b.1);
        let hist = a.1.histogram();
        assert!(hist[0] > 0, "background present");
        assert!(hist[VOID as usize] > 0, "void borders present");
        assert!((1..=20).any(|c| hist[c] > 0), "an object present");
        assert!(hist[21..255].iter().all(|&n| n == 0), "only VOC labels");
    }

    #[test]
    fn every_class_is_drawable_with_pixels() {
        for class in 1..=20u8 {
            let mut canvas = vec![[0f32; 3]; 64 * 64];
            let mut mask = Mask::filled(64, 64, 0);
            draw_object(&mut canvas, &mut mask, class, Difficulty::Easy, (0.12, 0.32), &mut Rng::new(class as u64));
            let n = mask.data.iter().filter(|&&v| v == class).count();
            assert!(n > 30, "class {class} drew {n} pixels");
        }
    }

    #[test]
    fn class_styles_are_distinct() {
        let mut keys: Vec<(usize, usize, i32)> = (1..=20u8)
            .map(|c| {
                let s = class_style(c, Difficulty::Easy);
                (s.shape as usize, s.texture as usize, s.hue as i32)
            })
            .collect();
        keys.sort();
        keys.dedup();
        assert_eq!(keys.len(), 20);
        // Hard scenes: pairs of classes share shape and hue, and differ in texture.
        let hard: Vec<(usize, usize, i32)> = (1..=20u8)
            .map(|c| {
                let s = class_style(c, Difficulty::Hard);
                (s.shape as usize, s.texture as usize, s.hue as i32)
            })
            .collect();
        for k in 0..10 {
            let (a, b) = (hard[k], hard[k + 10]);
            assert_eq!((a.0, a.2), (b.0, b.2), "classes {} and {} look alike", k + 1, k + 11);
            assert_ne!(a.1, b.1, "classes {} and {} differ in texture", k + 1, k + 11);
        }
    }
}
