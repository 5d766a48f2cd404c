//! `segdistill download voc|weights|sbd|ade20k|cityscapes|camvid`: data and weights from the internet, with
//! progress (bytes, speed, ETA), resume and checksums.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Mutex;

use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};

use crate::data::download::{
    self, Checksum, HttpOptions, Observer, Stage,
    catalog::{camvid_instructions, cityscapes_instructions, download_ade20k},
    download_sbd, download_voc, download_weight_url, download_weights,
};

#[derive(Debug, Args)]
pub struct DownloadArgs {
    #[command(subcommand)]
    pub what: What,
    /// Give up after this many seconds without data (default 30, or SEGDISTILL_TIMEOUT); what
    /// arrived is kept in a .part file and the next run resumes it.
    #[arg(long, global = true)]
    pub timeout: Option<u64>,
}

#[derive(Debug, Subcommand)]
pub enum What {
    /// PASCAL VOC 2012 train/val (1.9 GB) into DEST/VOCdevkit/VOC2012.
    Voc {
        #[arg(long, default_value = "data")]
        dest: PathBuf,
        /// Download from this address instead of the official one and its mirrors.
        #[arg(long)]
        url: Option<String>,
        /// Expected MD5 of the archive (default: the published 6cd6e144f989b92b3379bac3b3de84fd).
        #[arg(long, value_parser = Checksum::md5)]
        md5: Option<Checksum>,
        /// Keep the .tar after extracting (it is deleted by default).
        #[arg(long)]
        keep_archive: bool,
    },
    /// torchvision's weight files into DEST: by default the teacher, the students' backbone and the
    /// reference LR-ASPP; the rest of the zoo by name.
    Weights {
        #[arg(long, default_value = "weights")]
        dest: PathBuf,
        /// Only these (repeatable), or `all`: fcn-resnet50, mobilenet-v3-small, lraspp-mobilenet-v3-large
        /// (the default three); fcn-resnet101, deeplabv3-resnet50, deeplabv3-resnet101, deeplabv3-mbv3l
        /// (teachers); resnet50, resnet101, mobilenet-v3-large (ImageNet backbones).
        #[arg(long)]
        only: Vec<String>,
        /// A mirror of https://download.pytorch.org/models (the file names are appended).
        #[arg(long)]
        base_url: Option<String>,
        /// Any other torch-hub style file (`name-<sha256 prefix>.pth`), checked by the hash in its name.
        #[arg(long, conflicts_with_all = ["only", "base_url"])]
        url: Option<String>,
    },
    /// SBD's augmented masks into VOC2012/SegmentationClassAug and the train_aug split list.
    Sbd {
        /// The VOC2012 folder (or a parent: VOCdevkit, or the folder holding it).
        #[arg(long, default_value = "data")]
        voc: PathBuf,
        #[arg(long)]
        url: Option<String>,
        /// Expected SHA-256 (or a prefix of at least 8 hex digits) of the archive.
        #[arg(long, value_parser = Checksum::sha256)]
        sha256: Option<Checksum>,
    },
    /// ADE20K SceneParsing (about 0.9 GB) into DEST/ADEChallengeData2016.
    Ade20k {
        #[arg(long, default_value = "data")]
        dest: PathBuf,
        /// Download from this address instead of MIT's.
        #[arg(long)]
        url: Option<String>,
        /// Expected SHA-256 (or a prefix of at least 8 hex digits) of the archive, in place of
        /// the SHA-1 published for MIT's file.
        #[arg(long, value_parser = Checksum::sha256)]
        sha256: Option<Checksum>,
        /// Keep the .zip after extracting (it is deleted by default).
        #[arg(long)]
        keep_archive: bool,
    },
    /// How to get CamVid in SegNet's 11-class layout.
    Camvid {
        #[arg(long, default_value = "data")]
        dest: PathBuf,
    },
    /// How to get Cityscapes (it needs a login, so it cannot be downloaded here).
    Cityscapes {
        #[arg(long, default_value = "data/cityscapes")]
        dest: PathBuf,
    },
}

/// A terminal bar per stage: bytes, speed and ETA.
struct TerminalProgress {
    bar: Mutex<Option<ProgressBar>>,
}

impl TerminalProgress {
    fn new() -> Self {
        Self { bar: Mutex::new(None) }
    }

    fn finish(&self) {
        if let Ok(mut b) = self.bar.lock()
            && let Some(bar) = b.take()
        {
            bar.finish();
        }
    }
}

impl Observer for TerminalProgress {
    fn stage(&self, stage: Stage, total: Option<u64>) {
        self.finish();
        let bar = match total {
            Some(t) => ProgressBar::new(t),
            None => ProgressBar::new_spinner(),
        };
        let template = if stage == Stage::Extracting && total.is_some() {
            "{msg:>20} [{bar:32.cyan/blue}] {percent}% ({elapsed}, ETA {eta})"
        } else {
            "{msg:>20} [{bar:32.cyan/blue}] {bytes}/{total_bytes} ({bytes_per_sec}, ETA {eta})"
        };
        bar.set_style(
            ProgressStyle::with_template(template)
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        bar.set_message(stage.label());
        if let Ok(mut b) = self.bar.lock() {
            *b = Some(bar);
        }
    }

    fn advance(&self, bytes: u64) {
        if let Ok(b) = self.bar.lock()
            && let Some(bar) = b.as_ref()
        {
            bar.inc(bytes);
        }
    }

    fn message(&self, text: &str) {
        // Through `suspend`, not `println`: a hidden bar (stderr not a terminal) would drop the line.
        match self.bar.lock().ok().and_then(|b| b.clone()) {
            Some(bar) => bar.suspend(|| eprintln!("{text}")),
            None => eprintln!("{text}"),
        }
    }
}

pub fn run(args: DownloadArgs) -> anyhow::Result<ExitCode> {
    let options = HttpOptions::with_timeout_secs(args.timeout)?;
    let progress = TerminalProgress::new();
    let result = match args.what {
        What::Voc { dest, url, md5, keep_archive } => {
            download_voc(&dest, url.as_deref(), md5, keep_archive, &options, &progress).map(|f| {
                let verb = if f.already_present { "already present" } else { "ready" };
                format!(
                    "VOC 2012 {verb}: {}\nuse it with --data {} (or the app's dataset field)",
                    f.path.display(),
                    f.path.display()
                )
            })
        }
        What::Weights { dest, only, base_url, url } => {
            let files = match url {
                Some(u) => download_weight_url(&dest, &u, &options, &progress).map(|f| vec![f]),
                None => download_weights(&dest, &only, base_url.as_deref(), &options, &progress),
            };
            files.map(|files| {
                let line = |f: &download::Fetched| {
                    format!("{}{}", f.path.display(), if f.already_present { " (already present)" } else { "" })
                };
                files.iter().map(line).collect::<Vec<_>>().join("\n")
            })
        }
        What::Sbd { voc, url, sha256 } => match crate::data::voc::find_root(&voc) {
            Ok(root) => download_sbd(&root, url.as_deref(), sha256, &options, &progress)
                .map(|f| format!("train_aug ready: {} (train with --split train_aug)", f.path.display())),
            Err(e) => Err(download::DownloadError::Invalid(format!(
                "{e}; download VOC first with `segdistill download voc --dest {}`",
                voc.display()
            ))),
        },
        What::Ade20k { dest, url, sha256, keep_archive } => {
            download_ade20k(&dest, url.as_deref(), sha256, keep_archive, &options, &progress).map(|f| {
                let verb = if f.already_present { "already present" } else { "ready" };
                format!("ADE20K {verb}: {}\nuse it with --data {}", f.path.display(), f.path.display())
            })
        }
        What::Camvid { dest } => {
            println!("{}", camvid_instructions(&dest));
            return Ok(ExitCode::SUCCESS);
        }
        What::Cityscapes { dest } => {
            println!("{}", cityscapes_instructions(&dest));
            return Ok(ExitCode::SUCCESS);
        }
    };
    progress.finish();
    match result {
        Ok(summary) => {
            println!("{summary}");
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("error: {e}");
            Ok(ExitCode::FAILURE)
        }
    }
}
