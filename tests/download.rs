//! `segdistill download` against a local HTTP server: a full VOC download and extraction, a resume
//! after a broken connection (a Range request), a checksum mismatch that leaves nothing behind, a
//! stalled server timing out cleanly, and weight files checked by the hash in their name. Each
//! failure says what happened: a bad address, a silent server, an HTTP error (and whether retrying
//! helps), resume advice only when a `.part` holds bytes, and an archive with the right checksum
//! that is no tar (described, never its bytes printed). ADE20K's zip is extracted, detected and
//! opened, and a damaged, cut or wrong zip (or a 404) leaves no half-extracted folder.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::http_server::{Behavior, TestServer};
use common::*;
use segdistill::data::demo::DemoConfig;
use segdistill::data::demo_layouts::{DemoLayout, generate};
use segdistill::data::download::checksum::Algorithm;
use segdistill::data::{Dataset, DatasetKind};

fn names_in(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map_or(vec![], |r| r.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect());
    v.sort();
    v
}

fn download_voc(dest: &Path, url: &str, md5: &str, extra: &[&str]) -> std::process::Output {
    let mut args = vec!["download", "voc", "--dest", dest.to_str().unwrap(), "--url", url, "--md5", md5];
    args.extend_from_slice(extra);
    segdistill(&args)
}

fn assert_usable_voc(root: &Path) {
    assert!(root.join("ImageSets/Segmentation/val.txt").is_file());
    let out = segdistill(&["check-data", "--data", root.to_str().unwrap(), "--split", "train"]);
    assert!(out.status.success(), "check-data on the extracted dataset: {}{}", stdout(&out), stderr(&out));
}

#[test]
fn full_download_extracts_into_vocdevkit_and_cleans_up() {
    let tar = voc_tar();
    let md5 = digest_of(&tar, Algorithm::Md5);
    let server = TestServer::start(vec![("VOCtrainval_11-May-2012.tar", tar, Behavior::Normal)]);
    let dest = tempfile::tempdir().unwrap();
    let out = download_voc(dest.path(), &server.url("VOCtrainval_11-May-2012.tar"), &md5, &[]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    assert!(stdout(&out).contains("VOC 2012 ready"), "{}", stdout(&out));
    assert_usable_voc(&dest.path().join("VOCdevkit/VOC2012"));
    assert_eq!(names_in(dest.path()), ["VOCdevkit"], "archive, .part and staging folders are gone");
    // A second run finds it and downloads nothing.
    let again = download_voc(dest.path(), &server.url("VOCtrainval_11-May-2012.tar"), &md5, &[]);
    assert!(again.status.success() && stdout(&again).contains("already present"), "{}", stdout(&again));
    assert_eq!(server.requests().len(), 1);
}

#[test]
fn interrupted_download_resumes_with_a_range_request() {
    let tar = voc_tar();
    let half = tar.len() / 2;
    let md5 = digest_of(&tar, Algorithm::Md5);
    let server = TestServer::start(vec![("voc.tar", tar.clone(), Behavior::CutOnceAfter(half))]);
    let dest = tempfile::tempdir().unwrap();
    let first = download_voc(dest.path(), &server.url("voc.tar"), &md5, &[]);
    assert!(!first.status.success(), "a broken connection must fail");
    let err = stderr(&first);
    assert!(err.contains("run the same command again to resume"), "{err}");
    let part = dest.path().join("VOCtrainval_11-May-2012.tar.part");
    assert_eq!(std::fs::metadata(&part).unwrap().len() as usize, half, "the received half is kept");
    assert!(!dest.path().join("VOCdevkit").exists());

    let second = download_voc(dest.path(), &server.url("voc.tar"), &md5, &["--keep-archive"]);
    assert!(second.status.success(), "{}{}", stdout(&second), stderr(&second));
    let reqs = server.requests();
    assert_eq!(reqs.len(), 2);
    assert_eq!(reqs[0].range, None);
    assert_eq!(reqs[1].range.as_deref(), Some(format!("bytes={half}-").as_str()));
    assert_usable_voc(&dest.path().join("VOCdevkit/VOC2012"));
    assert_eq!(
        std::fs::read(dest.path().join("VOCtrainval_11-May-2012.tar")).unwrap(),
        tar,
        "--keep-archive keeps it, intact"
    );
}

#[test]
fn a_server_that_ignores_range_restarts_cleanly() {
    let tar = voc_tar();
    let md5 = digest_of(&tar, Algorithm::Md5);
    let server = TestServer::start(vec![("voc.tar", tar.clone(), Behavior::IgnoreRange)]);
    let dest = tempfile::tempdir().unwrap();
    // A stale half-download from elsewhere: the server answers 200, so it must be overwritten.
    std::fs::write(dest.path().join("VOCtrainval_11-May-2012.tar.part"), &tar[..100]).unwrap();
    let out = download_voc(dest.path(), &server.url("voc.tar"), &md5, &[]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    assert_usable_voc(&dest.path().join("VOCdevkit/VOC2012"));
}

#[test]
fn checksum_mismatch_is_rejected_and_leaves_nothing() {
    let tar = voc_tar();
    let server = TestServer::start(vec![("voc.tar", tar, Behavior::Normal)]);
    let dest = tempfile::tempdir().unwrap();
    let out = download_voc(dest.path(), &server.url("voc.tar"), "6cd6e144f989b92b3379bac3b3de84fd", &[]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("expected 6cd6e144f989b92b3379bac3b3de84fd") && err.contains("MD5"), "{err}");
    assert_eq!(names_in(dest.path()), Vec::<String>::new(), "no archive, no .part, no half-extracted folder");
}

#[test]
fn a_stalled_server_times_out_and_keeps_the_partial_file() {
    let tar = voc_tar();
    let md5 = digest_of(&tar, Algorithm::Md5);
    let server = TestServer::start(vec![("voc.tar", tar, Behavior::Stall)]);
    let dest = tempfile::tempdir().unwrap();
    let t0 = Instant::now();
    let out = download_voc(dest.path(), &server.url("voc.tar"), &md5, &["--timeout", "1"]);
    assert!(t0.elapsed() < Duration::from_secs(20), "the timeout must fire, took {:?}", t0.elapsed());
    assert!(!out.status.success());
    let err = stderr(&out);
    let part = dest.path().join("VOCtrainval_11-May-2012.tar.part");
    assert!(err.contains("stopped sending: no data for 1 s"), "{err}");
    assert!(
        err.contains(&format!("the 16 bytes received so far are kept in {}", part.display()))
            && err.contains("run the same command again to resume"),
        "{err}"
    );
    assert_eq!(std::fs::metadata(&part).unwrap().len(), 16);
}

/// Says nothing about a `.part` file or resuming: there is nothing to resume.
fn assert_no_resume_advice(err: &str, dest: &Path) {
    assert!(!err.contains(".part") && !err.contains("resume"), "no .part exists, none may be promised: {err}");
    assert!(!dest.join("VOCtrainval_11-May-2012.tar.part").exists(), "no empty .part is left behind");
}

#[test]
fn bad_addresses_are_refused_before_anything_is_written() {
    // (address, what the message must say about it)
    let cases = [
        ("ftp://127.0.0.1/voc.tar", "`ftp://` addresses are not supported"),
        ("file:///tmp/voc.tar", "`file://` addresses are not supported"),
        ("FTP://mirror.example/voc.tar", "`ftp://` addresses are not supported"),
        ("host.robots.ox.ac.uk/voc.tar", "does not start with http:// or https://"),
        ("", "does not start with http:// or https://"),
        ("http://", "not a valid http:// or https:// address"),
        ("https://exa mple.org/voc.tar", "not a valid http:// or https:// address"),
        ("http://[::1/voc.tar", "not a valid http:// or https:// address"),
    ];
    for (url, says) in cases {
        let dest = tempfile::tempdir().unwrap();
        let target = dest.path().join("new");
        let out = download_voc(&target, url, &"0".repeat(32), &[]);
        assert!(!out.status.success(), "{url:?} must fail");
        let err = stderr(&out);
        assert!(err.contains(&format!("`{url}` is not a valid http:// or https:// address")), "{url:?}: {err}");
        assert!(err.contains(says), "{url:?} should say {says:?}: {err}");
        assert!(!err.contains("retry") && !err.contains("try again"), "retrying cannot help {url:?}: {err}");
        assert_no_resume_advice(&err, &target);
        assert!(!target.exists(), "{url:?}: nothing may be created");
    }
    let dest = tempfile::tempdir().unwrap();
    let d = dest.path().to_str().unwrap();
    let out = segdistill(&["download", "weights", "--dest", d, "--url", "ftp://h/mobilenet_v3_small-047dcff4.pth"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("`ftp://` addresses are not supported"), "{}", stderr(&out));
    assert_eq!(names_in(dest.path()), Vec::<String>::new());
}

#[test]
fn a_server_that_sends_nothing_says_so_without_promising_a_resume() {
    let tar = voc_tar();
    let md5 = digest_of(&tar, Algorithm::Md5);
    // Silent: not even the status line. StallAfterHeaders: headers, then no byte of the body.
    for behavior in [Behavior::Silent, Behavior::StallAfterHeaders] {
        let server = TestServer::start(vec![("voc.tar", tar.clone(), behavior)]);
        let dest = tempfile::tempdir().unwrap();
        let t0 = Instant::now();
        let out = download_voc(dest.path(), &server.url("voc.tar"), &md5, &["--timeout", "1"]);
        assert!(t0.elapsed() < Duration::from_secs(20), "{behavior:?}: the timeout must fire, took {:?}", t0.elapsed());
        assert!(!out.status.success());
        let err = stderr(&out);
        assert!(err.contains("stopped sending: no data for 1 s") && err.contains("--timeout"), "{behavior:?}: {err}");
        assert!(err.contains("nothing was received: try again later"), "{behavior:?}: {err}");
        assert_no_resume_advice(&err, dest.path());
        assert_eq!(names_in(dest.path()), Vec::<String>::new(), "{behavior:?}");
    }
}

#[test]
fn a_connection_cut_before_any_byte_leaves_no_part_file() {
    let tar = voc_tar();
    let md5 = digest_of(&tar, Algorithm::Md5);
    let server = TestServer::start(vec![("voc.tar", tar.clone(), Behavior::CutOnceAfter(0))]);
    let dest = tempfile::tempdir().unwrap();
    let out = download_voc(dest.path(), &server.url("voc.tar"), &md5, &[]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains(&format!("broke after 0 of {} bytes", tar.len())), "{err}");
    assert!(err.contains("retrying may help"), "{err}");
    assert_no_resume_advice(&err, dest.path());
    // The cut happens once: running again works.
    let again = download_voc(dest.path(), &server.url("voc.tar"), &md5, &[]);
    assert!(again.status.success(), "{}{}", stdout(&again), stderr(&again));
}

#[test]
fn http_errors_say_whether_retrying_helps() {
    let server = TestServer::start(vec![
        ("forbidden.tar", vec![], Behavior::Status(403)),
        ("gone.tar", vec![], Behavior::Status(410)),
        ("busy.tar", vec![], Behavior::Status(503)),
        ("broken.tar", vec![], Behavior::Status(500)),
    ]);
    // (file, what the message must say); "missing.tar" is not served: a 404.
    let cases = [
        ("missing.tar", "HTTP 404", "the file is not at that address, so retrying will not help"),
        ("gone.tar", "HTTP 410", "the file is not at that address, so retrying will not help"),
        ("forbidden.tar", "HTTP 403", "the server refuses to give out this file, so retrying will not help"),
        ("busy.tar", "HTTP 503", "a problem on the server's side: retrying later may help"),
        ("broken.tar", "HTTP 500", "a problem on the server's side: retrying later may help"),
    ];
    for (file, status, says) in cases {
        let dest = tempfile::tempdir().unwrap();
        let out = download_voc(dest.path(), &server.url(file), &"0".repeat(32), &[]);
        assert!(!out.status.success(), "{file}");
        let err = stderr(&out);
        assert!(err.contains(status) && err.contains(says), "{file} should say {says:?}: {err}");
        assert!(err.contains("--url"), "{file}: another address is the way out: {err}");
        assert_no_resume_advice(&err, dest.path());
    }
    // A server error while a resumable `.part` exists: the bytes are kept, and the message says so.
    let dest = tempfile::tempdir().unwrap();
    let part = dest.path().join("VOCtrainval_11-May-2012.tar.part");
    std::fs::write(&part, [7u8; 100]).unwrap();
    let out = download_voc(dest.path(), &server.url("busy.tar"), &"0".repeat(32), &[]);
    let err = stderr(&out);
    assert!(err.contains("retrying later may help"), "{err}");
    assert!(err.contains(&format!("the 100 bytes received so far are kept in {}", part.display())), "{err}");
    assert_eq!(std::fs::read(&part).unwrap(), [7u8; 100], "nothing lost");
    let reqs = server.requests();
    assert_eq!(reqs.last().and_then(|r| r.range.clone()).as_deref(), Some("bytes=100-"));
}

/// Every character of `text` is printable (or a line break): nothing from a binary file.
fn assert_printable(text: &str) {
    let bad: Vec<char> =
        text.chars().filter(|&c| (c.is_control() && c != '\n') || c == char::REPLACEMENT_CHARACTER).collect();
    assert!(bad.is_empty(), "raw bytes reached the terminal ({bad:?}): {text}");
}

#[test]
fn an_archive_with_the_right_checksum_that_is_no_tar_is_described_not_printed() {
    let jpeg = std::fs::read(voc().join("JPEGImages/2011_000003.jpg")).unwrap();
    let html = b"<!DOCTYPE html>\n<html><body>Please log in</body></html>\n".to_vec();
    let mut gzip = vec![0x1f, 0x8b, 8, 0];
    gzip.extend((0..3000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8));
    // A real tar whose second header is damaged: escape sequences in its name, junk in its checksum
    // field (the tar reader quotes both in its error).
    let tar = voc_tar();
    let second = tar::Archive::new(&tar[..]).entries().unwrap().nth(1).unwrap().unwrap().raw_header_position() as usize;
    let mut damaged = tar.clone();
    damaged[second..second + 12].copy_from_slice(b"\x1b[2J\x1b[31mevi");
    damaged[second + 148..second + 156].copy_from_slice(&[0xff, 0xfe, 0x1b, b'[', b'0', b'm', 0x07, 0x80]);
    let cut = tar[..tar.len() / 2 + 100].to_vec(); // inside a block: an entry or header is cut
    // (served bytes, what the message must say)
    let cases: [(&[u8], &str); 5] = [
        (&jpeg, "it is not a tar archive but a JPEG image"),
        (&html, "it is not a tar archive but an HTML page"),
        (&gzip, "it is not a tar archive but a gzip-compressed file"),
        (&damaged, "the tar archive is corrupt: an entry header is damaged"),
        (&cut, "the tar archive is corrupt: it is cut short"),
    ];
    for (bytes, says) in cases {
        let md5 = digest_of(bytes, Algorithm::Md5);
        let server = TestServer::start(vec![("voc.tar", bytes.to_vec(), Behavior::Normal)]);
        let dest = tempfile::tempdir().unwrap();
        let out = download_voc(dest.path(), &server.url("voc.tar"), &md5, &[]);
        assert!(!out.status.success(), "{says}");
        let err = stderr(&out);
        let archive = dest.path().join("VOCtrainval_11-May-2012.tar");
        assert!(err.contains(&format!("cannot extract {}: {says}", archive.display())), "{says}: {err}");
        assert_printable(&err);
        assert_eq!(std::fs::read(&archive).unwrap(), bytes, "{says}: the verified archive is kept");
        assert_eq!(names_in(dest.path()), ["VOCtrainval_11-May-2012.tar"], "{says}: nothing half-extracted");
    }
}

#[test]
fn unreachable_host_says_offline() {
    // A port nothing listens on (bound, then released).
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let dest = tempfile::tempdir().unwrap();
    let out = download_voc(dest.path(), &format!("http://127.0.0.1:{port}/voc.tar"), &"0".repeat(32), &[]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("cannot reach 127.0.0.1"), "{}", stderr(&out));
}

/// A real torch.save file from the fixtures (zip format, 0.85 MB), served under a torch-hub style
/// name carrying its hash.
fn weights_file() -> (Vec<u8>, String) {
    let bytes = std::fs::read(torch_file("mbv3s_tiny_zip.pth")).unwrap();
    let sha = digest_of(&bytes, Algorithm::Sha256);
    (bytes, format!("mbv3s_tiny-{}.pth", &sha[..8]))
}

#[test]
fn weights_are_verified_by_the_hash_in_their_name() {
    let (bytes, name) = weights_file();
    let server = TestServer::start(vec![
        (name.as_str(), bytes.clone(), Behavior::CutOnceAfter(400_000)),
        // Published name, wrong content: must be refused.
        ("fcn_resnet50_coco-1167a1af.pth", b"not the published file".to_vec(), Behavior::Normal),
    ]);
    let dest = tempfile::tempdir().unwrap();
    let d = dest.path().to_str().unwrap();
    let url = server.url(&name);
    let first = segdistill(&["download", "weights", "--dest", d, "--url", &url]);
    assert!(!first.status.success(), "the cut connection fails the first attempt");
    let second = segdistill(&["download", "weights", "--dest", d, "--url", &url]);
    assert!(second.status.success(), "{}{}", stdout(&second), stderr(&second));
    let got: PathBuf = dest.path().join(&name);
    assert_eq!(std::fs::read(&got).unwrap(), bytes);
    // The downloaded file reads as the torch checkpoint it is.
    let dict = segdistill::model::weights::StateDict::load(&got).unwrap();
    assert!(dict.keys().any(|k| k.starts_with("backbone.0.0.weight")), "a MobileNetV3 state dict");

    let bad = segdistill(&["download", "weights", "--dest", d, "--only", "fcn-resnet50", "--base-url", &server.base]);
    assert!(!bad.status.success());
    assert!(stderr(&bad).contains("expected 1167a1af"), "{}", stderr(&bad));
    assert_eq!(names_in(dest.path()), [name], "the mismatching file is deleted");
}

#[test]
fn sbd_masks_make_a_train_aug_split_without_val_ids() {
    let (_d, root) = demo_dataset(6, 3, 48);
    // An SBD-style archive: masks for every image (train and val ids) in SegmentationClassAug/.
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let opts = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    for e in std::fs::read_dir(root.join("SegmentationClass")).unwrap().flatten() {
        zip.start_file(format!("SegmentationClassAug/{}", e.file_name().to_string_lossy()), opts).unwrap();
        std::io::Write::write_all(&mut zip, &std::fs::read(e.path()).unwrap()).unwrap();
    }
    let bytes = zip.finish().unwrap().into_inner();
    let server = TestServer::start(vec![("aug.zip", bytes, Behavior::Normal)]);
    let out = segdistill(&["download", "sbd", "--voc", root.to_str().unwrap(), "--url", &server.url("aug.zip")]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    assert!(stderr(&out).contains("SHA-256"), "the unpinned archive's hash is printed: {}", stderr(&out));
    let list = std::fs::read_to_string(root.join("ImageSets/Segmentation/train_aug.txt")).unwrap();
    let val = std::fs::read_to_string(root.join("ImageSets/Segmentation/val.txt")).unwrap();
    assert_eq!(list.lines().count(), 6);
    assert!(list.lines().all(|id| !val.lines().any(|v| v == id)));
    let check = segdistill(&["check-data", "--data", root.to_str().unwrap(), "--split", "train_aug"]);
    assert!(check.status.success(), "{}{}", stdout(&check), stderr(&check));
}

#[test]
fn cityscapes_explains_how_to_get_it() {
    let out = segdistill(&["download", "cityscapes", "--dest", "/data/cs"]);
    assert!(out.status.success());
    let text = stdout(&out);
    assert!(text.contains("cityscapes-dataset.com") && text.contains("/data/cs/gtFine"), "{text}");
}

/// The demo split sizes of the ADE20K archive.
const ADE_TRAIN: usize = 4;
const ADE_VAL: usize = 2;

/// A small ADEChallengeData2016.zip as MIT publishes it (everything under `ADEChallengeData2016/`,
/// folders included), from the demo written in the ADE20K layout; stored, not deflated, so an
/// entry's bytes can be found and damaged. Also returns the last file's bytes.
fn ade20k_zip() -> (Vec<u8>, Vec<u8>) {
    let dir = tempfile::tempdir().unwrap();
    let config = DemoConfig { train: ADE_TRAIN, val: ADE_VAL, size: 48, seed: 3, ..Default::default() };
    let root = generate(DemoLayout::Ade20k, dir.path(), &config, &|| {}).unwrap();
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let opts = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    let mut last = Vec::new();
    let mut pending = vec![root.clone()];
    while let Some(d) = pending.pop() {
        let rel = d.strip_prefix(dir.path()).unwrap().to_str().unwrap().replace('\\', "/");
        zip.add_directory(format!("{rel}/"), opts).unwrap();
        let mut entries: Vec<PathBuf> = std::fs::read_dir(&d).unwrap().map(|e| e.unwrap().path()).collect();
        entries.sort();
        for p in entries {
            if p.is_dir() {
                pending.push(p);
            } else {
                let name = p.strip_prefix(dir.path()).unwrap().to_str().unwrap().replace('\\', "/");
                zip.start_file(name, opts).unwrap();
                last = std::fs::read(&p).unwrap();
                std::io::Write::write_all(&mut zip, &last).unwrap();
            }
        }
    }
    (zip.finish().unwrap().into_inner(), last)
}

fn download_ade20k(dest: &Path, url: &str, extra: &[&str]) -> std::process::Output {
    let mut args = vec!["download", "ade20k", "--dest", dest.to_str().unwrap(), "--url", url];
    args.extend_from_slice(extra);
    segdistill(&args)
}

#[test]
fn ade20k_download_extracts_a_dataset_that_is_detected_and_opens() {
    let (zip, _) = ade20k_zip();
    let sha = digest_of(&zip, Algorithm::Sha256);
    let server = TestServer::start(vec![("ADEChallengeData2016.zip", zip, Behavior::Normal)]);
    let dest = tempfile::tempdir().unwrap();
    let url = server.url("ADEChallengeData2016.zip");
    // Without --sha256 the archive is held to MIT's file's published SHA-1, which this one is not.
    let refused = download_ade20k(dest.path(), &url, &[]);
    assert!(!refused.status.success(), "{}", stdout(&refused));
    let err = stderr(&refused);
    assert!(err.contains("SHA-1") && err.contains("219e1696abb36c8ba3a3afe7fb2f4b4606a897c7"), "{err}");
    assert!(!dest.path().join("ADEChallengeData2016").exists(), "nothing is extracted from a refused archive");
    let out = download_ade20k(dest.path(), &url, &["--sha256", &sha]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    let root = dest.path().join("ADEChallengeData2016");
    assert!(stdout(&out).contains(&format!("ADE20K ready: {}", root.display())), "{}", stdout(&out));
    assert_eq!(names_in(dest.path()), ["ADEChallengeData2016"], "archive, .part and staging folders are gone");

    assert_eq!(DatasetKind::detect(&root), DatasetKind::Ade20k);
    assert_eq!(DatasetKind::detect(dest.path()), DatasetKind::Ade20k, "--dest itself works as --data");
    let train = Dataset::open(&root, None, "train").unwrap();
    assert_eq!((train.kind, train.len()), (DatasetKind::Ade20k, ADE_TRAIN));
    assert_eq!(Dataset::open(&root, None, "val").unwrap().len(), ADE_VAL);
    let check = segdistill(&["check-data", "--data", root.to_str().unwrap(), "--split", "train"]);
    assert!(check.status.success(), "check-data reads every file: {}{}", stdout(&check), stderr(&check));

    // A second run finds it and downloads nothing.
    let again = download_ade20k(dest.path(), &url, &["--sha256", &sha]);
    assert!(again.status.success() && stdout(&again).contains("ADE20K already present"), "{}", stdout(&again));
    assert_eq!(server.requests().len(), 2, "the refused download and the pinned one");
}

#[test]
fn a_broken_ade20k_zip_says_why_and_leaves_no_half_extracted_folder() {
    let (zip, last) = ade20k_zip();
    // One byte of the last file flipped: every other entry is written to the staging folder
    // before the file's CRC fails.
    let at = zip.windows(last.len()).rposition(|w| w == last.as_slice()).expect("stored bytes") + last.len() / 2;
    let mut damaged = zip.clone();
    damaged[at] ^= 0xff;
    let cut = zip[..zip.len() - 200].to_vec(); // the central directory is cut off
    let mut wrong = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    wrong.start_file("readme.txt", zip::write::SimpleFileOptions::default()).unwrap();
    std::io::Write::write_all(&mut wrong, b"not ADE20K").unwrap();
    let wrong = wrong.finish().unwrap().into_inner();
    // (served bytes, what the message must say)
    let cases: [(&[u8], &str); 3] = [
        (&damaged, "the zip archive is corrupt"),
        (&cut, "the zip archive is corrupt"),
        (&wrong, "it holds no ADEChallengeData2016 folder"),
    ];
    for (bytes, says) in cases {
        let server = TestServer::start(vec![("ade.zip", bytes.to_vec(), Behavior::Normal)]);
        let dest = tempfile::tempdir().unwrap();
        let out =
            download_ade20k(dest.path(), &server.url("ade.zip"), &["--sha256", &digest_of(bytes, Algorithm::Sha256)]);
        assert!(!out.status.success(), "{says}");
        let err = stderr(&out);
        let archive = dest.path().join("ADEChallengeData2016.zip");
        assert!(err.contains(&format!("cannot extract {}: {says}", archive.display())), "{says}: {err}");
        assert!(err.contains("nothing was extracted"), "{err}");
        assert_printable(&err);
        assert_eq!(names_in(dest.path()), ["ADEChallengeData2016.zip"], "{says}: only the archive is left");
    }
    // The damaged entry was the last one: everything before it had been extracted, and is gone.
    let entries = zip::ZipArchive::new(std::io::Cursor::new(&zip)).unwrap().len();
    let pin = digest_of(&damaged, Algorithm::Sha256);
    let server = TestServer::start(vec![("ade.zip", damaged, Behavior::Normal)]);
    let dest = tempfile::tempdir().unwrap();
    let err = stderr(&download_ade20k(dest.path(), &server.url("ade.zip"), &["--sha256", &pin]));
    assert!(
        err.contains(&format!("is damaged (Invalid checksum), after {} of {entries} entries", entries - 1)),
        "{err}"
    );
    // Not on the server: nothing is written at all.
    let server = TestServer::start(vec![]);
    let dest = tempfile::tempdir().unwrap();
    let out = download_ade20k(dest.path(), &server.url("ADEChallengeData2016.zip"), &[]);
    let err = stderr(&out);
    assert!(!out.status.success() && err.contains("HTTP 404") && err.contains("--url"), "{err}");
    assert_eq!(names_in(dest.path()), Vec::<String>::new());
}
