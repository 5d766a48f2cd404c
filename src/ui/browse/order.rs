//! Which images the Browse grid shows and in what order ([`SortKey`], the class and confusion
//! filters), and the confusion matrix of a model over the images. No drawing.

use crate::diagnostics::browse::BrowseItem;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SortKey {
    FileOrder,
    /// Worst student first.
    StudentAscending,
    StudentDescending,
    TeacherAscending,
    /// Where the teacher beats the student most.
    GapDescending,
}

impl SortKey {
    pub const ALL: [SortKey; 5] =
        [Self::FileOrder, Self::StudentAscending, Self::StudentDescending, Self::TeacherAscending, Self::GapDescending];

    pub fn label(self) -> &'static str {
        match self {
            Self::FileOrder => "file order",
            Self::StudentAscending => "student IoU, failures first",
            Self::StudentDescending => "student IoU, successes first",
            Self::TeacherAscending => "teacher IoU, lowest first",
            Self::GapDescending => "teacher − student gap, largest first",
        }
    }
}

/// Which model the confusion matrix describes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    Student,
    Teacher,
}

impl Source {
    pub fn name(self) -> &'static str {
        match self {
            Self::Student => "student",
            Self::Teacher => "teacher",
        }
    }
}

fn gap(i: &BrowseItem) -> f64 {
    match (&i.student, &i.teacher) {
        (Some(s), Some(t)) => t.miou - s.miou,
        _ => f64::NAN,
    }
}

/// The items that pass the class filter (images holding that class) and the confusion filter
/// (images where a model predicted the first class as the second), in the `sort` order: indices
/// into `items`.
pub fn visible(
    items: &[BrowseItem],
    class_filter: Option<u8>,
    confusion_filter: Option<(Source, u8, u8)>,
    sort: SortKey,
) -> Vec<usize> {
    let mut v: Vec<usize> = (0..items.len())
        .filter(|&i| class_filter.is_none_or(|c| items[i].classes.contains(&c)))
        .filter(|&i| {
            confusion_filter.is_none_or(|(source, t, p)| {
                let view = match source {
                    Source::Student => items[i].student.as_ref(),
                    Source::Teacher => items[i].teacher.as_ref(),
                };
                view.is_some_and(|v| v.confusions.iter().any(|&(a, b, _)| a == t && b == p))
            })
        })
        .collect();
    let s = |i: &usize| items[*i].student.as_ref().map_or(f64::NAN, |v| v.miou);
    let t = |i: &usize| items[*i].teacher.as_ref().map_or(f64::NAN, |v| v.miou);
    match sort {
        SortKey::FileOrder => v.sort_by_key(|&i| items[i].index),
        SortKey::StudentAscending => v.sort_by(|a, b| s(a).total_cmp(&s(b))),
        SortKey::StudentDescending => v.sort_by(|a, b| s(b).total_cmp(&s(a))),
        SortKey::TeacherAscending => v.sort_by(|a, b| t(a).total_cmp(&t(b))),
        SortKey::GapDescending => v.sort_by(|a, b| gap(&items[*b]).total_cmp(&gap(&items[*a]))),
    }
    v
}

/// The pixel counts of `source`'s predictions over `items`, `n`×`n` row-major: ground truth by
/// row, prediction by column (classes from `n` on are left out).
pub fn confusion_matrix(items: &[BrowseItem], source: Source, n: usize) -> Vec<u64> {
    let mut cm = vec![0u64; n * n];
    for it in items {
        let view = match source {
            Source::Student => it.student.as_ref(),
            Source::Teacher => it.teacher.as_ref(),
        };
        for &(t, p, c) in view.map(|v| v.confusions.as_slice()).unwrap_or_default() {
            if (t as usize) < n && (p as usize) < n {
                cm[t as usize * n + p as usize] += c as u64;
            }
        }
    }
    cm
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::Mask;
    use crate::diagnostics::browse::{ModelView, PackedMask};

    fn view(miou: f64, confusions: Vec<(u8, u8, u32)>) -> ModelView {
        ModelView { mask: PackedMask::pack(&Mask::filled(2, 2, 0)), miou, confusions }
    }

    /// Images a..d: (classes, student mIoU, teacher mIoU, the student's confusions).
    fn items() -> Vec<BrowseItem> {
        let rows = [
            ("a", vec![0, 1], 0.6, Some(0.9), vec![(1, 0, 5)]),
            ("b", vec![0], 0.2, Some(0.3), vec![]),
            ("c", vec![0, 2], 0.9, None, vec![(2, 1, 3)]),
            ("d", vec![0, 1], 0.4, Some(0.95), vec![(1, 2, 7)]),
        ];
        rows.into_iter()
            .enumerate()
            .map(|(index, (id, classes, s, t, confusions))| BrowseItem {
                index,
                id: id.into(),
                width: 2,
                height: 2,
                thumbnail: image::RgbImage::new(2, 2),
                ground_truth: PackedMask::pack(&Mask::filled(2, 2, 0)),
                classes,
                student: Some(view(s, confusions)),
                teacher: t.map(|t| view(t, vec![(0, 0, 4)])),
            })
            .collect()
    }

    fn ids(items: &[BrowseItem], order: Vec<usize>) -> Vec<&str> {
        order.into_iter().map(|i| items[i].id.as_str()).collect()
    }

    #[test]
    fn each_sort_orders_the_images() {
        let items = items();
        let order = |sort| ids(&items, visible(&items, None, None, sort));
        assert_eq!(order(SortKey::FileOrder), ["a", "b", "c", "d"]);
        assert_eq!(order(SortKey::StudentAscending), ["b", "d", "a", "c"]);
        assert_eq!(order(SortKey::StudentDescending), ["c", "a", "d", "b"]);
        // Images without a teacher (NaN) sort after the others.
        assert_eq!(order(SortKey::TeacherAscending), ["b", "a", "d", "c"]);
        let with_teacher: Vec<BrowseItem> = items.iter().filter(|i| i.teacher.is_some()).cloned().collect();
        assert_eq!(ids(&with_teacher, visible(&with_teacher, None, None, SortKey::GapDescending)), ["d", "a", "b"]);
    }

    #[test]
    fn the_filters_keep_the_matching_images() {
        let items = items();
        assert_eq!(ids(&items, visible(&items, Some(1), None, SortKey::FileOrder)), ["a", "d"]);
        let confused = Some((Source::Student, 1, 2));
        assert_eq!(ids(&items, visible(&items, None, confused, SortKey::FileOrder)), ["d"]);
        assert!(visible(&items, Some(2), confused, SortKey::FileOrder).is_empty());
        assert_eq!(
            ids(&items, visible(&items, None, Some((Source::Teacher, 0, 0)), SortKey::FileOrder)),
            ["a", "b", "d"]
        );
    }

    #[test]
    fn the_confusion_matrix_sums_the_images() {
        let items = items();
        let cm = confusion_matrix(&items, Source::Student, 3);
        assert_eq!(cm, [0, 0, 0, 5, 0, 7, 0, 3, 0]);
        // Classes beyond the matrix are left out.
        assert_eq!(confusion_matrix(&items, Source::Student, 2), [0, 0, 5, 0]);
        assert_eq!(confusion_matrix(&items, Source::Teacher, 1), [12]);
    }
}
