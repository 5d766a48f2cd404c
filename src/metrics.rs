//! Segmentation metrics from a confusion matrix: per-class IoU, mIoU, pixel accuracy.
//!
//! Conventions follow torchvision's `references/segmentation/utils.ConfusionMatrix`: rows are the
//! target class, columns the prediction; pixels whose target is not a class (void = 255) are
//! skipped. mIoU averages the classes whose union is non-empty (present in target or prediction).
//! A prediction outside the class range (e.g. a predicted 255) counts as wrong for its target.

use serde::{Deserialize, Serialize};

/// A confusion matrix accumulated over any number of images; merge matrices from several
/// threads with [`ConfusionMatrix::merge`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfusionMatrix {
    num_classes: usize,
    /// (target, prediction) counts, row-major `num_classes × num_classes`.
    counts: Vec<u64>,
    /// Per target class: pixels predicted as something outside the class range.
    invalid_predictions: Vec<u64>,
}

impl ConfusionMatrix {
    pub fn new(num_classes: usize) -> Self {
        Self { num_classes, counts: vec![0; num_classes * num_classes], invalid_predictions: vec![0; num_classes] }
    }

    pub fn num_classes(&self) -> usize {
        self.num_classes
    }

    /// A matrix of known (target, prediction) counts, row-major `num_classes × num_classes` (the
    /// Browse tab sums its images' sparse matrices into one).
    pub fn from_counts(num_classes: usize, counts: Vec<u64>) -> Self {
        assert_eq!(counts.len(), num_classes * num_classes, "counts must be num_classes²");
        Self { num_classes, counts, invalid_predictions: vec![0; num_classes] }
    }

    /// Adds one image (or batch) of predictions against targets (same length).
    pub fn update(&mut self, prediction: &[u8], target: &[u8]) {
        assert_eq!(prediction.len(), target.len(), "prediction and target sizes differ");
        let n = self.num_classes;
        for (&p, &t) in prediction.iter().zip(target) {
            let (p, t) = (p as usize, t as usize);
            if t >= n {
                continue;
            }
            if p < n {
                self.counts[t * n + p] += 1;
            } else {
                self.invalid_predictions[t] += 1;
            }
        }
    }

    /// Adds another matrix (from another thread or shard).
    pub fn merge(&mut self, other: &ConfusionMatrix) {
        assert_eq!(self.num_classes, other.num_classes, "merging matrices of different class counts");
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += b;
        }
        for (a, b) in self.invalid_predictions.iter_mut().zip(&other.invalid_predictions) {
            *a += b;
        }
    }

    /// Count of pixels of class `target` predicted as `prediction`.
    pub fn get(&self, target: usize, prediction: usize) -> u64 {
        self.counts[target * self.num_classes + prediction]
    }

    /// Row-major counts (rows = target, cols = prediction).
    pub fn counts(&self) -> &[u64] {
        &self.counts
    }

    fn row_total(&self, c: usize) -> u64 {
        let n = self.num_classes;
        self.counts[c * n..(c + 1) * n].iter().sum::<u64>() + self.invalid_predictions[c]
    }

    fn col_total(&self, c: usize) -> u64 {
        (0..self.num_classes).map(|t| self.get(t, c)).sum()
    }

    /// Labelled (non-void) pixels counted.
    pub fn total(&self) -> u64 {
        self.counts.iter().sum::<u64>() + self.invalid_predictions.iter().sum::<u64>()
    }

    /// IoU per class; `None` where the class is in neither target nor prediction.
    pub fn iou_per_class(&self) -> Vec<Option<f64>> {
        (0..self.num_classes)
            .map(|c| {
                let tp = self.get(c, c);
                let union = self.row_total(c) + self.col_total(c) - tp;
                (union > 0).then(|| tp as f64 / union as f64)
            })
            .collect()
    }

    /// Mean IoU over classes with a non-empty union (NaN if there are none).
    pub fn mean_iou(&self) -> f64 {
        mean_present(&self.iou_per_class())
    }

    /// Fraction of labelled pixels predicted correctly (NaN if none were labelled).
    pub fn pixel_accuracy(&self) -> f64 {
        let correct: u64 = (0..self.num_classes).map(|c| self.get(c, c)).sum();
        let total = self.total();
        if total == 0 { f64::NAN } else { correct as f64 / total as f64 }
    }

    /// Recall per class (accuracy on the pixels of that class); `None` for absent classes.
    pub fn class_accuracy(&self) -> Vec<Option<f64>> {
        (0..self.num_classes)
            .map(|c| {
                let row = self.row_total(c);
                (row > 0).then(|| self.get(c, c) as f64 / row as f64)
            })
            .collect()
    }

    /// A summary with all the metrics.
    pub fn scores(&self) -> Scores {
        Scores { miou: self.mean_iou(), pixel_acc: self.pixel_accuracy(), iou: self.iou_per_class() }
    }
}

/// Mean over present entries (NaN if none).
pub fn mean_present(values: &[Option<f64>]) -> f64 {
    let present: Vec<f64> = values.iter().flatten().copied().collect();
    if present.is_empty() { f64::NAN } else { present.iter().sum::<f64>() / present.len() as f64 }
}

/// Metrics over a set of images.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Scores {
    pub miou: f64,
    pub pixel_acc: f64,
    /// Per class; `None` (JSON `null`) where the class is absent from target and prediction.
    pub iou: Vec<Option<f64>>,
}

/// Scores of a single image, for sorting successes and failures.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ImageScore {
    pub id: String,
    /// mIoU over the classes present in this image's target or prediction.
    pub miou: f64,
    pub pixel_acc: f64,
    /// Classes present in the target.
    pub classes: Vec<u8>,
}

/// Per-image score of a prediction against its target.
pub fn score_image(id: &str, prediction: &[u8], target: &[u8], num_classes: usize) -> (ImageScore, ConfusionMatrix) {
    let mut cm = ConfusionMatrix::new(num_classes);
    cm.update(prediction, target);
    let mut present = [false; 256];
    for &t in target {
        present[t as usize] = true;
    }
    let classes = (0..num_classes.min(255)).filter(|&c| present[c]).map(|c| c as u8).collect();
    let score = ImageScore { id: id.to_string(), miou: cm.mean_iou(), pixel_acc: cm.pixel_accuracy(), classes };
    (score, cm)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hand_computed_example() {
        // target:     0 0 1 1 255 2
        // prediction: 0 1 1 1  0  3(out of range for 3 classes)
        let mut cm = ConfusionMatrix::new(3);
        cm.update(&[0, 1, 1, 1, 0, 3], &[0, 0, 1, 1, 255, 2]);
        assert_eq!(cm.get(0, 0), 1);
        assert_eq!(cm.get(0, 1), 1);
        assert_eq!(cm.get(1, 1), 2);
        assert_eq!(cm.total(), 5, "void skipped, invalid prediction counted");
        let iou = cm.iou_per_class();
        assert_eq!(iou[0], Some(0.5)); // tp 1, union 2
        assert_eq!(iou[1], Some(2.0 / 3.0)); // tp 2, union 3
        assert_eq!(iou[2], Some(0.0)); // target present, never predicted
        assert!((cm.mean_iou() - (0.5 + 2.0 / 3.0) / 3.0).abs() < 1e-12);
        assert!((cm.pixel_accuracy() - 3.0 / 5.0).abs() < 1e-12);
    }

    #[test]
    fn absent_classes_are_none_and_excluded_from_mean() {
        let mut cm = ConfusionMatrix::new(4);
        cm.update(&[0, 0, 1], &[0, 0, 1]);
        assert_eq!(cm.iou_per_class(), vec![Some(1.0), Some(1.0), None, None]);
        assert_eq!(cm.mean_iou(), 1.0);
        assert!(ConfusionMatrix::new(2).mean_iou().is_nan());
    }

    #[test]
    fn merging_equals_accumulating() {
        let (p1, t1) = ([0u8, 1, 2, 2], [0u8, 2, 2, 255]);
        let (p2, t2) = ([1u8, 1, 0], [1u8, 0, 0]);
        let mut whole = ConfusionMatrix::new(3);
        whole.update(&p1, &t1);
        whole.update(&p2, &t2);
        let mut a = ConfusionMatrix::new(3);
        a.update(&p1, &t1);
        let mut b = ConfusionMatrix::new(3);
        b.update(&p2, &t2);
        a.merge(&b);
        assert_eq!(a, whole);
    }

    #[test]
    fn image_score_lists_target_classes() {
        let (s, _) = score_image("x", &[0, 5, 5], &[0, 5, 255], 21);
        assert_eq!(s.classes, vec![0, 5]);
        assert_eq!(s.miou, 1.0);
    }
}
