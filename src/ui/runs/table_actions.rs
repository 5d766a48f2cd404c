//! What the Runs table does besides showing runs: Measure again (the speed figures of the listed
//! architectures, measured afresh in the background) and Export CSV (the table as shown). The
//! buttons only ask; [`TableActions::update`], called once per frame with the tab's update, does
//! the work, so nothing is started while drawing.

use std::path::{Path, PathBuf};

use egui::Ui;

use super::RunEntry;
use crate::report::table::{Measure, student_row_when, student_speed_key};
use crate::ui::jobs::{Job, take_finished};
use crate::ui::widgets::{error_text, note};

/// The file the table is exported to, in the runs folder's exports.
pub const CSV_FILE: &str = "runs-table.csv";

#[derive(Default)]
pub struct TableActions {
    measure_asked: bool,
    measure: Option<Job<Result<String, String>>>,
    measure_result: Option<Result<String, String>>,
    /// The table as shown when Export CSV was pressed, waiting to be written.
    csv_asked: Option<String>,
    csv_result: Option<Result<PathBuf, String>>,
}

impl TableActions {
    /// Carries out what the buttons asked for; true when new speed figures were stored (the
    /// runs should be read again to show them).
    pub fn update(&mut self, ctx: &egui::Context, runs_dir: &Path, entries: &[RunEntry]) -> bool {
        if std::mem::take(&mut self.measure_asked) && self.measure.is_none() {
            let dirs: Vec<PathBuf> = entries.iter().filter(|e| e.row.is_some()).map(|e| e.dir.clone()).collect();
            self.measure_result = None;
            self.measure =
                Some(Job::spawn("measuring the speeds again", ctx, move |progress| measure_again(&dirs, progress)));
        }
        if let Some(csv) = self.csv_asked.take() {
            // A few hundred bytes: written here, atomically, rather than in a thread.
            let path = runs_dir.join(crate::train::run_folder::EXPORTS_DIR).join(CSV_FILE);
            let written = path
                .parent()
                .map_or(Ok(()), std::fs::create_dir_all)
                .and_then(|()| crate::util::fs::write_atomic(&path, csv.as_bytes()))
                .map(|()| path.clone())
                .map_err(|e| format!("cannot write {}: {e}", path.display()));
            self.csv_result = Some(written);
        }
        match take_finished(&mut self.measure) {
            Some(result) => {
                let stored = result.is_ok();
                self.measure_result = Some(result);
                stored
            }
            None => false,
        }
    }

    /// The buttons and what they did; `csv` gives the table as shown (called on a click).
    pub fn ui(&mut self, ui: &mut Ui, csv: impl FnOnce() -> String) {
        ui.horizontal_wrapped(|ui| {
            let hover = "measure ms/image again for every architecture and size listed (in the background); do it on \
                         an idle machine: figures taken while it is busy are marked (busy)";
            if ui.add_enabled(self.measure.is_none(), egui::Button::new("Measure again")).on_hover_text(hover).clicked()
            {
                self.measure_asked = true;
            }
            if let Some(job) = &self.measure {
                ui.spinner();
                let (done, total) = job.progress.counts();
                ui.label(format!("measuring speeds ({done}/{total})…"));
            }
            match &self.measure_result {
                Some(Ok(done)) => note(ui, done.clone()),
                Some(Err(e)) => error_text(ui, e.clone()),
                None => {}
            }
            ui.separator();
            let hover = format!("the table as shown, to exports/{CSV_FILE} in the runs folder");
            if ui.button("Export CSV").on_hover_text(hover).clicked() {
                self.csv_asked = Some(csv());
            }
            match &self.csv_result {
                Some(Ok(path)) => note(ui, format!("table written to {}", path.display())),
                Some(Err(e)) => error_text(ui, e.clone()),
                None => {}
            }
        });
    }
}

/// Measures each architecture and size of `dirs` once, afresh, storing the figures.
fn measure_again(dirs: &[PathBuf], progress: &crate::ui::jobs::Progress) -> Result<String, String> {
    let device = candle_core::Device::Cpu;
    let runs: Vec<_> = dirs.iter().filter_map(|d| crate::report::runs::load(d).ok()).collect();
    let mut keys = Vec::new();
    let mut firsts = Vec::new();
    for run in &runs {
        if let Some(key) = student_speed_key(run, &device).filter(|k| !keys.contains(k)) {
            keys.push(key);
            firsts.push(run);
        }
    }
    progress.set_total(firsts.len() as u64);
    let mut busy = 0;
    for run in firsts {
        let row = student_row_when(run, &device, Measure::Again)
            .map_err(|e| format!("measuring {}: {e:#}", run.name))?
            .ok_or_else(|| format!("{} was not measured", run.name))?;
        busy += usize::from(row.ms_busy.is_some());
        progress.inc();
    }
    let measured = keys.len();
    Ok(match busy {
        0 => format!("{measured} speed figure(s) measured again"),
        n => format!("{measured} speed figure(s) measured again, {n} while the machine was busy"),
    })
}
