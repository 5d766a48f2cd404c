//! The weight files of the Data panel: which file each slot downloads ([`WeightsSlot`]), and a
//! weights field with its Download button, progress and outcome.

use std::path::PathBuf;

use egui::Ui;

use super::commands::{Command, CommandQueue, DownloadTarget};
use super::downloads::{DownloadTask, Outcome};
use super::file_dialog::PickKind;
use super::state::DownloadSettings;
use super::widgets::{PathField, error_text, note};
use crate::data::download::{self, HttpOptions};

/// The two weight files the app can fetch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WeightsSlot {
    Teacher,
    Backbone,
}

impl WeightsSlot {
    /// The file the Download button fetches: torchvision's weights of the chosen teacher
    /// architecture (none for architectures torchvision does not publish), or the students'
    /// MobileNetV3-Small backbone.
    fn catalog(self, teacher: crate::model::ModelKind) -> Option<download::catalog::Weights> {
        match self {
            Self::Teacher => teacher.published_weights(),
            Self::Backbone => Some(download::WEIGHTS[1]),
        }
    }

    fn label(self) -> &'static str {
        match self {
            Self::Teacher => "teacher",
            Self::Backbone => "backbone",
        }
    }
}

/// A weights field with its Download button.
#[derive(Default)]
pub(super) struct WeightsRow {
    field: PathField,
    pub(super) task: Option<DownloadTask>,
    pub(super) outcome: Option<Outcome>,
}

impl WeightsRow {
    /// Takes a finished download's outcome; returns the file it delivered.
    pub(super) fn poll(&mut self) -> Option<PathBuf> {
        let outcome = self.task.as_mut()?.poll()?;
        self.task = None;
        let delivered = match &outcome {
            Outcome::Done(p) => Some(p.clone()),
            _ => None,
        };
        self.outcome = Some(outcome);
        delivered
    }

    pub(super) fn start(
        &mut self,
        ctx: &egui::Context,
        slot: WeightsSlot,
        settings: &DownloadSettings,
        teacher: crate::model::ModelKind,
    ) {
        let Some(w) = slot.catalog(teacher) else { return };
        let dir = settings.weights_dir.clone();
        let base = Some(settings.weights_base_url.trim().to_string()).filter(|b| !b.is_empty());
        let name = w.name.to_string();
        self.outcome = None;
        self.task = Some(DownloadTask::spawn(&format!("{} weights", slot.label()), ctx, move |obs| {
            let files = download::download_weights(
                &dir,
                &[name],
                base.as_deref(),
                &HttpOptions::with_timeout_secs(None).unwrap_or_default(),
                obs,
            )?;
            Ok(files.into_iter().next().map(|f| f.path).unwrap_or_default())
        }));
    }

    pub(super) fn ui(
        &mut self,
        ui: &mut Ui,
        slot: WeightsSlot,
        path: &mut String,
        teacher: crate::model::ModelKind,
        commands: &mut CommandQueue,
    ) {
        let w = slot.catalog(teacher);
        self.field.ui(ui, slot.label(), path, PickKind::WeightsFile, "weights file", w.map(|w| w.file_name));
        if let Some(task) = &self.task {
            if task.ui(ui) {
                commands.push(Command::CancelDownload(DownloadTarget::Weights(slot)));
            }
            return;
        }
        let trimmed = path.trim();
        let present = !trimmed.is_empty() && std::path::Path::new(trimmed).is_file();
        ui.horizontal(|ui| {
            if present {
                ui.label("found");
            } else if !trimmed.is_empty() {
                error_text(ui, "no file at this path");
            }
            let Some(w) = w.filter(|_| !present) else { return };
            if ui.button(format!("Download {} weights ({} MB)", slot.label(), w.approx_mb)).clicked() {
                commands.push(Command::Download(DownloadTarget::Weights(slot)));
            }
        });
        outcome_ui(ui, self.outcome.as_ref());
    }
}

/// How the last download ended, in words.
pub(super) fn outcome_ui(ui: &mut Ui, outcome: Option<&Outcome>) {
    match outcome {
        Some(Outcome::Failed(e)) => error_text(ui, e.clone()),
        Some(Outcome::Cancelled) => note(ui, "download cancelled; it resumes where it stopped next time"),
        Some(Outcome::Done(p)) => note(ui, format!("downloaded to {}", p.display())),
        None => {}
    }
}
