//! The foundation CLI end to end: demo-data, check-data and score.

mod common;

use common::*;

#[test]
fn check_data_on_real_voc_reports_four_usable_pairs_and_missing_images() {
    // tests/fixtures/voc2012: 10 train ids, 4 with their real image.
    let out = segdistill(&["check-data", "--data", voc().to_str().unwrap(), "--split", "train"]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "not fully usable → exit 1\n{text}\n{}", stderr(&out));
    assert!(text.contains("images: 10 listed, 4 usable"), "{text}");
    assert!(text.contains("missing image: 6"), "{text}");
    assert!(text.contains("2007_000032.jpg"), "missing images are listed with their path");
    assert!(!stderr(&out).contains("panicked"));
    assert!(text.contains("person") && text.contains("void"), "class histogram printed");
}

#[test]
fn demo_data_is_a_fully_usable_voc_dataset() {
    let tmp = tempfile::tempdir().unwrap();
    let out_dir = tmp.path().join("demo");
    let out = segdistill(&[
        "demo-data",
        "--out",
        out_dir.to_str().unwrap(),
        "--train",
        "12",
        "--val",
        "4",
        "--size",
        "64",
        "--seed",
        "3",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    for split in ["train", "val", "trainval"] {
        let out = segdistill(&["check-data", "--data", out_dir.to_str().unwrap(), "--split", split]);
        assert_eq!(out.status.code(), Some(0), "{split}: {}", stdout(&out));
    }
    let text = stdout(&segdistill(&["check-data", "--data", out_dir.to_str().unwrap(), "--split", "val"]));
    assert!(text.contains("images: 4 listed, 4 usable") && text.contains("OK"), "{text}");

    // Same seed, same bytes.
    let again = tmp.path().join("again");
    segdistill(&[
        "demo-data",
        "--out",
        again.to_str().unwrap(),
        "--train",
        "12",
        "--val",
        "4",
        "--size",
        "64",
        "--seed",
        "3",
    ]);
    let f = "VOCdevkit/VOC2012/SegmentationClass/demo_000005.png";
    assert_eq!(std::fs::read(out_dir.join(f)).unwrap(), std::fs::read(again.join(f)).unwrap());
}

#[test]
fn score_ground_truth_against_itself_and_a_shifted_copy() {
    let (_tmp, root) = demo_dataset(5, 0, 48);
    let gt = root.join("SegmentationClass");
    let out = segdistill(&["score", "--pred", gt.to_str().unwrap(), "--gt", root.to_str().unwrap(), "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(v["miou"], 1.0);
    assert_eq!(v["pixel_acc"], 1.0);
    let iou = v["iou"].as_array().unwrap();
    assert_eq!(iou.len(), 21);
    assert!(iou.iter().any(|x| x.is_null()), "absent classes are null");

    // Predictions as grayscale PNGs, all background: IoU of background < 1, others 0 or null.
    let preds = tempfile::tempdir().unwrap();
    for e in std::fs::read_dir(&gt).unwrap() {
        let p = e.unwrap().path();
        let m =
            segdistill::data::mask::read_mask(&p, segdistill::data::mask::LabelEncoding::VocIndex { num_classes: 21 })
                .unwrap();
        let img = image::GrayImage::from_pixel(m.width, m.height, image::Luma([0]));
        img.save(preds.path().join(p.file_name().unwrap())).unwrap();
    }
    let out = segdistill(&["score", "--pred", preds.path().to_str().unwrap(), "--gt", gt.to_str().unwrap()]);
    let text = stdout(&out);
    assert!(out.status.success() && text.contains("mIoU") && text.contains("background"), "{text}");
}

#[test]
fn score_errors_name_the_file() {
    let (_tmp, root) = demo_dataset(2, 0, 48);
    let gt = root.join("SegmentationClass");
    let preds = tempfile::tempdir().unwrap();
    // Wrong size.
    image::GrayImage::new(5, 5).save(preds.path().join("demo_000001.png")).unwrap();
    let out = segdistill(&["score", "--pred", preds.path().to_str().unwrap(), "--gt", gt.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("demo_000001.png") && stderr(&out).contains("size mismatch"), "{}", stderr(&out));
    // No ground truth for a prediction.
    std::fs::remove_file(preds.path().join("demo_000001.png")).unwrap();
    image::GrayImage::new(5, 5).save(preds.path().join("stranger.png")).unwrap();
    let out = segdistill(&["score", "--pred", preds.path().to_str().unwrap(), "--gt", gt.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("stranger.png"), "{}", stderr(&out));
}
