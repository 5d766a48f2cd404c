//! Split lists as people really write them: a byte-order mark from a Windows editor, ids pasted
//! twice, `--data` pointing at a file. Each id is used once, repeats are reported, and a file
//! given as the dataset folder is told apart from a missing folder.

mod common;

use std::path::{Path, PathBuf};

use common::*;
use segdistill::data::check::check_dataset;
use segdistill::data::voc::read_split_list;
use segdistill::data::{DataError, Dataset};

fn train_list(root: &Path) -> PathBuf {
    root.join("ImageSets/Segmentation/train.txt")
}

fn listed_ids(root: &Path) -> Vec<String> {
    std::fs::read_to_string(train_list(root)).unwrap().lines().map(String::from).collect()
}

#[test]
fn a_byte_order_mark_does_not_hide_the_first_image() {
    let (_tmp, root) = demo_dataset(3, 0, 40);
    let ids = listed_ids(&root);
    std::fs::write(train_list(&root), format!("\u{feff}{}\r\n", ids.join("\r\n"))).unwrap();
    let ds = Dataset::open(&root, None, "train").unwrap();
    assert_eq!(ds.samples.iter().map(|s| s.id.as_str()).collect::<Vec<_>>(), ids);
    assert!(ds.load(0).is_ok(), "the first id names its real files: {:?}", ds.samples[0]);
    let report = check_dataset(&ds, &|| {});
    assert!(report.is_fully_usable(), "{:?}", report.problems);
}

#[test]
fn repeated_ids_are_used_once_and_check_data_names_them_and_the_file() {
    let (_tmp, root) = demo_dataset(4, 0, 40);
    let ids = listed_ids(&root);
    // The first id three times, the third twice, as after pasting part of the list again.
    let listed = [&ids[..], &ids[..1], &ids[2..3], &ids[..1]].concat();
    std::fs::write(train_list(&root), listed.join("\n") + "\n").unwrap();

    let ds = Dataset::open(&root, None, "train").unwrap();
    assert_eq!(ds.samples.iter().map(|s| s.id.as_str()).collect::<Vec<_>>(), ids, "each id once, in listed order");
    let list = read_split_list(&ds.root, "train").unwrap();
    let repeats: Vec<(&str, usize)> = list.duplicates.iter().map(|d| (d.id.as_str(), d.times)).collect();
    assert_eq!(repeats, [(ids[0].as_str(), 3), (ids[2].as_str(), 2)]);
    assert!(list.duplicates.iter().all(|d| d.file == train_list(&root)));

    let report = check_dataset(&ds, &|| {});
    assert_eq!((report.listed, report.usable), (4, 4));
    let problems: Vec<(&str, String)> = report.problems.iter().map(|p| (p.id.as_str(), p.error.to_string())).collect();
    assert_eq!(problems.len(), 2, "{problems:?}");
    for ((id, msg), times) in problems.iter().zip([3, 2]) {
        assert!(msg.contains("train.txt") && msg.contains(&format!("'{id}' {times} times")), "{msg}");
    }

    let out = segdistill(&["check-data", "--data", root.to_str().unwrap(), "--split", "train"]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{text}\n{}", stderr(&out));
    assert!(text.contains(&format!("lists id '{}' 3 times", ids[0])), "{text}");
    assert!(text.contains("images: 4 listed, 4 usable"), "{text}");
}

#[test]
fn a_file_given_as_the_dataset_folder_says_what_to_pass() {
    let (_tmp, root) = demo_dataset(2, 0, 40);
    let list = train_list(&root);
    let err = Dataset::open(&list, None, "train").unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, DataError::NotADataset { .. }), "{msg}");
    assert!(msg.contains("train.txt") && msg.contains("is a file, not a folder"), "{msg}");
    assert!(msg.contains("VOCdevkit") && !msg.contains("no such"), "{msg}");

    let out = segdistill(&["check-data", "--data", list.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("is a file, not a folder"), "{}", stderr(&out));
    let out = segdistill(&["check-data", "--data", root.join("absent").to_str().unwrap()]);
    assert!(stderr(&out).contains("no such file or folder"), "{}", stderr(&out));
}
