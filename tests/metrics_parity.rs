//! Metrics against torchvision's reference ConfusionMatrix (fixture `metric.*`) and on real VOC
//! masks (the committed few always; all 2,913 with `SEGDISTILL_REAL_DATA=DIR`).

mod common;

use common::*;
use segdistill::data::mask::{LabelEncoding, read_mask};
use segdistill::metrics::ConfusionMatrix;

#[test]
fn confusion_iou_miou_and_accuracy_equal_torchvision() {
    let bytes = std::fs::read(torchvision_fixtures_dir().join("parity.safetensors")).unwrap();
    let (shape, pred, dt) = read_tensor(&bytes, "metric.pred");
    assert_eq!((shape.as_slice(), dt.as_str()), ([4usize, 37, 53].as_slice(), "I64"));
    let pred: Vec<u8> = as_i64(&pred).iter().map(|&v| u8::try_from(v).unwrap()).collect();
    let target: Vec<u8> = as_i64(&read_tensor(&bytes, "metric.target").1).iter().map(|&v| v as u8).collect();
    let mut cm = ConfusionMatrix::new(21);
    cm.update(&pred, &target);

    let expected: Vec<u64> = as_i64(&read_tensor(&bytes, "metric.confusion").1).iter().map(|&v| v as u64).collect();
    assert_eq!(cm.counts(), expected.as_slice(), "integer confusion matrix equal");

    let iou_ref = as_f32(&read_tensor(&bytes, "metric.iou_per_class").1);
    for (c, (ours, theirs)) in cm.iou_per_class().iter().zip(&iou_ref).enumerate() {
        match ours {
            None => assert!(theirs.is_nan(), "class {c}: absent here, {theirs} in torchvision"),
            Some(v) => assert!((v - *theirs as f64).abs() <= 1e-6, "class {c}: {v} vs {theirs}"),
        }
    }
    assert!(cm.iou_per_class()[7].is_none() && cm.iou_per_class()[13].is_none(), "classes 7 and 13 absent");
    let miou = as_f32(&read_tensor(&bytes, "metric.miou").1)[0] as f64;
    let acc = as_f32(&read_tensor(&bytes, "metric.pixel_acc").1)[0] as f64;
    assert!((cm.mean_iou() - miou).abs() <= 1e-6, "mIoU {} vs {miou}", cm.mean_iou());
    assert!((cm.pixel_accuracy() - acc).abs() <= 1e-6, "pixel acc {} vs {acc}", cm.pixel_accuracy());
}

/// Naive reference: IoU per class by counting pixel sets directly.
fn naive_iou(pairs: &[(Vec<u8>, Vec<u8>)], n: usize) -> Vec<Option<f64>> {
    (0..n as u8)
        .map(|c| {
            let (mut inter, mut union) = (0u64, 0u64);
            for (p, t) in pairs {
                for (&pv, &tv) in p.iter().zip(t) {
                    if tv == 255 {
                        continue;
                    }
                    let (a, b) = (pv == c, tv == c);
                    inter += (a && b) as u64;
                    union += (a || b) as u64;
                }
            }
            (union > 0).then(|| inter as f64 / union as f64)
        })
        .collect()
}

#[test]
fn real_voc_masks_shifted_predictions_match_naive_counting_and_merge() {
    // The 16 committed masks, every one.
    shifted_predictions_match_naive_counting_and_merge(&voc(), 1, 16);
}

/// The same check on every 97th of the 2,913 official masks (opt-in: `SEGDISTILL_REAL_DATA`).
#[test]
fn all_real_voc_masks_shifted_predictions_match_naive_counting_and_merge() {
    if let Some(dir) = real_data("all_real_voc_masks_shifted_predictions_match_naive_counting_and_merge") {
        shifted_predictions_match_naive_counting_and_merge(&dir, 97, 30);
    }
}

fn shifted_predictions_match_naive_counting_and_merge(voc: &std::path::Path, step: usize, at_least: usize) {
    let dir = voc.join("SegmentationClass");
    let mut names: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
    names.sort();
    let enc = LabelEncoding::VocIndex { num_classes: 21 };
    // A prediction = the real mask shifted 7 px right, void filled with the left neighbour's class.
    let pairs: Vec<(Vec<u8>, Vec<u8>)> = names
        .iter()
        .step_by(step)
        .map(|p| {
            let m = read_mask(p, enc).unwrap();
            let w = m.width as usize;
            let pred: Vec<u8> = (0..m.data.len())
                .map(|i| {
                    let (x, y) = (i % w, i / w);
                    let v = m.data[y * w + x.saturating_sub(7)];
                    if v == 255 { 0 } else { v }
                })
                .collect();
            (pred, m.data)
        })
        .collect();
    assert!(pairs.len() >= at_least, "{} masks", pairs.len());
    let mut whole = ConfusionMatrix::new(21);
    let mut halves = [ConfusionMatrix::new(21), ConfusionMatrix::new(21)];
    for (i, (p, t)) in pairs.iter().enumerate() {
        whole.update(p, t);
        halves[i % 2].update(p, t);
    }
    let [mut a, b] = halves;
    a.merge(&b);
    assert_eq!(a, whole, "merged shards equal one pass");
    let naive = naive_iou(&pairs, 21);
    for (c, (x, y)) in whole.iou_per_class().iter().zip(&naive).enumerate() {
        match (x, y) {
            (Some(x), Some(y)) => assert!((x - y).abs() < 1e-12, "class {c}"),
            (None, None) => {}
            _ => panic!("class {c}: presence differs"),
        }
    }
    let non_void: u64 = pairs.iter().map(|(_, t)| t.iter().filter(|&&v| v != 255).count() as u64).sum();
    assert_eq!(whole.total(), non_void);
    assert!(whole.mean_iou() > 0.3 && whole.mean_iou() < 0.99, "shifted masks score in between: {}", whole.mean_iou());
}
