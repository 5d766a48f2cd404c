//! A plain image/mask folder as a dataset: the demo written in the folder layout is detected,
//! checked, trained on and tested; the split drawn for a folder without lists is written down and
//! stays the same; every kind of broken folder is named by `check-data`; two classes train too.

mod common;

use std::path::{Path, PathBuf};

use common::*;
use segdistill::data::demo::{DemoConfig, generate_folder};
use segdistill::data::mask::{LabelEncoding, Mask, read_mask, write_palette_png};
use segdistill::data::{Dataset, DatasetKind};

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn ok(out: &std::process::Output) {
    assert!(out.status.success(), "exit {:?}: {}{}", out.status.code(), stdout(out), stderr(out));
}

/// A demo dataset in the folder layout, in a fresh temp dir.
fn demo_folder(train: usize, val: usize) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("mydata");
    generate_folder(&root, &DemoConfig { train, val, size: 64, seed: 3, ..Default::default() }, &|| {}).unwrap();
    (dir, root)
}

fn check_data(root: &Path) -> (Option<i32>, String) {
    let out = segdistill(&["check-data", "--data", s(root)]);
    (out.status.code(), format!("{}{}", stdout(&out), stderr(&out)))
}

#[test]
fn the_demo_as_a_folder_is_detected_checked_trained_and_tested() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    ok(&segdistill(&[
        "demo-data",
        "--layout",
        "folder",
        "--out",
        s(&data),
        "--train",
        "6",
        "--val",
        "2",
        "--size",
        "64",
    ]));
    for f in ["images", "masks", "classes.txt", "train.txt", "val.txt"] {
        assert!(data.join(f).exists(), "{f} written");
    }
    assert_eq!(DatasetKind::detect(&data), DatasetKind::Folder);
    let (code, text) = check_data(&data);
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("folder dataset") && text.contains("21 classes") && text.contains("OK"), "{text}");
    // A second demo-data into the same folder is refused without --force.
    let again = segdistill(&["demo-data", "--layout", "folder", "--out", s(&data), "--train", "2", "--val", "1"]);
    assert!(!again.status.success());
    assert!(stderr(&again).contains("--force"), "{}", stderr(&again));

    let run = tmp.path().join("run");
    ok(&tiny_train(&data, &run).batch(2).run());
    let out = segdistill(&["test", "--run", s(&run), "--json"]);
    ok(&out);
    let v: serde_json::Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    assert!(v["pixel_acc"].as_f64().is_some(), "{v}");
}

#[test]
fn a_folder_without_split_lists_gets_one_written_down_that_stays() {
    let (_d, root) = demo_folder(8, 2);
    std::fs::remove_file(root.join("train.txt")).unwrap();
    std::fs::remove_file(root.join("val.txt")).unwrap();
    let first = Dataset::open(&root, None, "train").unwrap();
    let train = std::fs::read_to_string(root.join("train.txt")).unwrap();
    let val = std::fs::read_to_string(root.join("val.txt")).unwrap();
    assert_eq!((train.lines().count(), val.lines().count()), (8, 2), "a fifth goes to val");
    let second = Dataset::open(&root, None, "train").unwrap();
    assert_eq!(first.samples, second.samples, "the same split on every open");
    assert_eq!(std::fs::read_to_string(root.join("train.txt")).unwrap(), train, "train.txt is not rewritten");
    let val_ds = Dataset::open(&root, Some(DatasetKind::Folder), "val").unwrap();
    assert_eq!(val_ds.len(), 2);
    assert!(val_ds.samples.iter().all(|v| !first.samples.iter().any(|t| t.id == v.id)), "train and val are disjoint");
    assert_eq!(first.num_classes(), 21);
    assert_eq!(first.classes().names[15], "person");

    // --val-fraction on a fresh folder.
    std::fs::remove_file(root.join("train.txt")).unwrap();
    std::fs::remove_file(root.join("val.txt")).unwrap();
    let out = segdistill(&["check-data", "--data", s(&root), "--val-fraction", "0.5"]);
    ok(&out);
    assert_eq!(std::fs::read_to_string(root.join("val.txt")).unwrap().lines().count(), 5);
}

/// Overwrites `root/masks/<stem>.png` with `mask`.
fn put_mask(root: &Path, stem: &str, mask: &Mask) {
    write_palette_png(mask, &root.join("masks").join(format!("{stem}.png"))).unwrap();
}

#[test]
fn check_data_names_every_mismatch_with_its_file() {
    let (_d, root) = demo_folder(6, 2);
    let ids: Vec<String> = std::fs::read_to_string(root.join("train.txt")).unwrap().lines().map(String::from).collect();
    // An image without a mask.
    std::fs::remove_file(root.join("masks").join(format!("{}.png", ids[0]))).unwrap();
    // A mask without an image.
    std::fs::copy(root.join("masks").join(format!("{}.png", ids[1])), root.join("masks/orphan.png")).unwrap();
    // A mask value outside the 21 classes (and not the ignore index).
    put_mask(&root, &ids[2], &Mask::filled(64, 50, 30));
    // A mask of another size than its image.
    put_mask(&root, &ids[3], &Mask::filled(10, 10, 0));
    // A split line naming a stem that is nowhere.
    let mut train = std::fs::read_to_string(root.join("train.txt")).unwrap();
    train.push_str("ghost\n");
    std::fs::write(root.join("train.txt"), train).unwrap();

    let (code, text) = check_data(&root);
    assert_eq!(code, Some(1), "{text}");
    let image0 = root.join("images").join(format!("{}.jpg", ids[0]));
    assert!(text.contains("image without a mask") && text.contains(s(&image0)), "{text}");
    assert!(text.contains("mask without an image") && text.contains("orphan.png"), "{text}");
    assert!(text.contains("label value 30") && text.contains(&format!("{}.png", ids[2])), "{text}");
    assert!(text.contains("size mismatch") && text.contains(&format!("{}.png is 10×10", ids[3])), "{text}");
    assert!(text.contains("line 7 names 'ghost'") && text.contains("train.txt"), "{text}");
    assert!(text.contains("NOT FULLY USABLE"), "{text}");
}

#[test]
fn a_bad_classes_file_is_named_with_its_line() {
    let (_d, root) = demo_folder(2, 1);
    std::fs::write(root.join("classes.txt"), "background 0 0 0\ncar 1 2\n").unwrap();
    let (code, text) = check_data(&root);
    assert_eq!(code, Some(2), "{text}");
    assert!(text.contains("classes.txt line 2") && text.contains("car 1 2"), "{text}");
    std::fs::remove_file(root.join("classes.txt")).unwrap();
    let (code, text) = check_data(&root);
    assert_eq!(code, Some(2), "{text}");
    assert!(text.contains("no classes.txt"), "{text}");
}

#[test]
fn a_two_class_folder_with_rgb_masks_and_its_own_ignore_index_trains() {
    let (_d, root) = demo_folder(6, 2);
    // Foreground/background, ignore index 9; half of the masks as RGB images in the class colours.
    std::fs::write(root.join("classes.txt"), "background 0 0 0\nobject 255 255 255\nignore 9\n").unwrap();
    let mut stems: Vec<PathBuf> = std::fs::read_dir(root.join("masks")).unwrap().map(|e| e.unwrap().path()).collect();
    stems.sort();
    for (i, path) in stems.iter().enumerate() {
        let mut m = read_mask(path, LabelEncoding::VocIndex { num_classes: 21 }).unwrap();
        for v in &mut m.data {
            *v = match *v {
                0 => 0,
                255 => 9,
                _ => 1,
            };
        }
        if i % 2 == 0 {
            write_palette_png(&m, path).unwrap();
        } else {
            let rgb = image::RgbImage::from_fn(m.width, m.height, |x, y| match m.get(x, y) {
                0 => image::Rgb([0, 0, 0]),
                1 => image::Rgb([255, 255, 255]),
                _ => image::Rgb([224, 224, 192]),
            });
            rgb.save(path).unwrap();
        }
    }
    let (code, text) = check_data(&root);
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("2 classes"), "{text}");
    let ds = Dataset::open(&root, None, "train").unwrap();
    let m = ds.load_mask(1).unwrap();
    assert!(m.data.iter().all(|&v| v <= 1 || v == 255), "ignore index 9 reads as void");
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("run");
    ok(&tiny_train(&root, &run).batch(2).run());
}
