//! Broken datasets give errors that name the file, never a panic; check-data lists each problem.

mod common;

use std::path::Path;

use common::*;
use segdistill::data::{DataError, Dataset};

fn first_ids(root: &Path, n: usize) -> Vec<String> {
    std::fs::read_to_string(root.join("ImageSets/Segmentation/train.txt"))
        .unwrap()
        .lines()
        .take(n)
        .map(String::from)
        .collect()
}

#[test]
fn each_kind_of_damage_is_an_error_naming_the_file() {
    let (_tmp, root) = demo_dataset(6, 0, 48);
    let ids = first_ids(&root, 6);
    let jpg = |id: &str| root.join(format!("JPEGImages/{id}.jpg"));
    let png = |id: &str| root.join(format!("SegmentationClass/{id}.png"));

    // 0: truncated JPEG
    let bytes = std::fs::read(jpg(&ids[0])).unwrap();
    std::fs::write(jpg(&ids[0]), &bytes[..bytes.len() * 2 / 3]).unwrap();
    // 1: mask of the wrong size
    let small = segdistill::data::Mask::filled(10, 7, 0);
    segdistill::data::mask::write_palette_png(&small, &png(&ids[1])).unwrap();
    // 2: image file absent
    std::fs::remove_file(jpg(&ids[2])).unwrap();
    // 3: mask that is not a PNG (a JPEG under a .png name)
    std::fs::copy(jpg(&ids[4]), png(&ids[3])).unwrap();
    // 5: an id listed with neither file
    let list = root.join("ImageSets/Segmentation/train.txt");
    let mut text = std::fs::read_to_string(&list).unwrap();
    text.push_str("ghost_000001\n");
    std::fs::write(&list, text).unwrap();

    let ds = Dataset::open(&root, None, "train").unwrap();
    type IsKind = fn(&DataError) -> bool;
    let expect: [(usize, &str, IsKind); 5] = [
        (0, "JPEGImages", |e| matches!(e, DataError::Decode { .. })),
        (1, "SegmentationClass", |e| matches!(e, DataError::SizeMismatch { .. })),
        (2, "JPEGImages", |e| matches!(e, DataError::MissingFile { what: "image", .. })),
        (3, "SegmentationClass", |e| matches!(e, DataError::NotPng { .. })),
        (6, "ghost_000001", |e| matches!(e, DataError::MissingFile { .. })),
    ];
    for (i, path_part, is_kind) in expect {
        let err = ds.load(i).unwrap_err();
        let msg = err.to_string();
        assert!(is_kind(&err), "sample {i}: unexpected error kind: {msg}");
        assert!(msg.contains(path_part) && msg.contains(&ds.samples[i].id), "sample {i}: {msg}");
    }
    assert!(ds.load(4).is_ok(), "the untouched sample still loads");

    // check-data lists every problem with its path and exits 1.
    let out = segdistill(&["check-data", "--data", root.to_str().unwrap(), "--split", "train"]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{text}\n{}", stderr(&out));
    for kind in
        ["undecodable file: 1", "size mismatch: 1", "missing image: 2", "missing mask: 1", "mask is not a PNG: 1"]
    {
        assert!(text.contains(kind), "missing '{kind}' in:\n{text}");
    }
    assert!(text.contains(&format!("{}.jpg", ids[0])) && text.contains("ghost_000001.png"), "{text}");
    assert!(text.contains("images: 7 listed, 2 usable"), "{text}");
}

#[test]
fn missing_split_file_is_an_error_naming_it() {
    let (_tmp, root) = demo_dataset(2, 1, 40);
    let err = Dataset::open(&root, None, "test").unwrap_err().to_string();
    assert!(err.contains("ImageSets/Segmentation/test.txt") && err.contains("train"), "{err}");
    let out = segdistill(&["check-data", "--data", root.to_str().unwrap(), "--split", "test"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("test.txt"), "{}", stderr(&out));
}

#[test]
fn not_a_dataset_folder_is_explained() {
    let tmp = tempfile::tempdir().unwrap();
    let out = segdistill(&["check-data", "--data", tmp.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(err.contains("is not a VOC dataset") && err.contains("demo-data"), "{err}");
}
