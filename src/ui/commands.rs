//! The one route from what the user asked for to what the app does (as in rerun's viewer):
//! panels draw and push [`Command`]s; the app applies them at one point per frame
//! ([`super::SegdistillApp`]'s `apply`), after every panel has drawn. Panels never start threads
//! or touch another panel's state while drawing, so each action has one place that carries it
//! out and one place to test.

use std::path::PathBuf;

use super::plot_export::ExportFormat;
use super::train::LivePlot;
use super::weights::WeightsSlot;

/// What a download button fetches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DownloadTarget {
    Voc,
    Weights(WeightsSlot),
}

/// How the user answered "training is running — close anyway?".
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CloseChoice {
    /// Stop the run (it writes a checkpoint) and close once it has stopped.
    StopAndClose,
    /// Keep the window and the run.
    KeepTraining,
}

/// Everything a user can ask the app to do.
#[derive(Clone, Debug, PartialEq)]
pub enum Command {
    /// Start a run from the Train form; asks first when its name is taken.
    StartRun,
    /// Start the Train form's run under this (free) name.
    StartRunNamed(String),
    /// Train the teacher recipe on the chosen dataset.
    TrainTeacher,
    PauseRun,
    UnpauseRun,
    StopRun,
    /// Continue a stopped or interrupted run from its last checkpoint.
    ResumeRun(PathBuf),
    /// Use the demo dataset (drawing it first when it is not there).
    UseDemoData,
    Download(DownloadTarget),
    CancelDownload(DownloadTarget),
    EvaluateTeacher,
    CancelTeacherEvaluation,
    SetRunsDir(PathBuf),
    RescanRuns,
    /// Remove the teacher-cache folders no run can use any more (teacher file changed or gone).
    PruneTeacherCaches,
    /// Train the New study form's grid over the Train form's settings, one cell after another.
    StartStudy,
    /// Stop the study's cell that trains (it keeps a checkpoint) and queue no more.
    StopStudy,
    /// Write report.md for the runs selected in the Runs tab.
    ExportReport,
    /// Write a run's best student as an ONNX file (`<runs>/exports/<run>.onnx`).
    ExportOnnx(PathBuf),
    /// Open a folder in the desktop's file manager.
    OpenFolder(PathBuf),
    /// Browse a run's predictions.
    BrowseRun(PathBuf),
    /// Write one of the Train tab's plots as it stands (a save dialog asks where).
    ExportPlot(LivePlot, ExportFormat),
    /// The answer to the close question.
    Close(CloseChoice),
    /// Dismiss the open question without acting.
    DismissQuestion,
}

/// Commands pushed during a frame, applied after it.
#[derive(Debug, Default)]
pub struct CommandQueue {
    pending: Vec<Command>,
}

impl CommandQueue {
    pub fn push(&mut self, command: Command) {
        self.pending.push(command);
    }

    /// The commands of this frame, in the order they were pushed; leaves the queue empty.
    pub fn take(&mut self) -> Vec<Command> {
        std::mem::take(&mut self.pending)
    }

    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }
}

/// The keyboard shortcuts, as the Help menu lists them: (keys, what they do).
pub const SHORTCUTS: [(&str, &str); 2] = [
    ("Space", "pause or resume the run that trains (not while a text field is being edited)"),
    ("Ctrl+Enter", "start training with the Train tab's settings (as its Start button)"),
];

/// What the keys may act on this frame.
#[derive(Clone, Copy, Debug, Default)]
pub struct ShortcutScope {
    /// A run trains (Space pauses it).
    pub running: bool,
    /// A run is paused (Space resumes it).
    pub paused: bool,
    /// The Train tab is shown and its Start button is enabled (Ctrl+Enter presses it).
    pub can_start: bool,
}

/// The commands this frame's key presses ask for, in `scope`; the keys they use are consumed.
/// Space acts only while no widget has keyboard focus: in a text field it types, on a focused
/// button it presses that button.
pub fn shortcut_commands(ctx: &egui::Context, scope: ShortcutScope) -> Vec<Command> {
    let mut out = Vec::new();
    let start = egui::KeyboardShortcut::new(egui::Modifiers::COMMAND, egui::Key::Enter);
    if scope.can_start && ctx.input_mut(|i| i.consume_shortcut(&start)) {
        out.push(Command::StartRun);
    }
    let focused = ctx.memory(|m| m.focused().is_some());
    if !focused
        && (scope.running || scope.paused)
        && ctx.input_mut(|i| i.consume_key(egui::Modifiers::NONE, egui::Key::Space))
    {
        out.push(if scope.paused { Command::UnpauseRun } else { Command::PauseRun });
    }
    out
}

/// A question the app asks before it acts (shown as a modal dialog).
#[derive(Clone, Debug, PartialEq)]
pub enum Question {
    /// The run name is taken: resume that run, start under a fresh name, or cancel.
    NameTaken {
        name: String,
        /// How the existing run stands ("completed", "stopped after epoch 3/30", …).
        status: String,
        /// The existing run's folder, when it can be resumed (stopped or interrupted).
        resumable: Option<PathBuf>,
        /// The first free name (`name-2`, `name-3`, …).
        fresh: String,
    },
    /// The window is closing while a run trains.
    CloseWhileTraining { run: String },
}

/// Opens `dir` in the desktop's file manager without waiting for it; without one (no desktop
/// session, no opener installed) the message says so and gives the path to copy.
pub fn open_folder(dir: &std::path::Path) -> Result<(), String> {
    let opener = if cfg!(target_os = "macos") {
        "open"
    } else if cfg!(target_os = "windows") {
        "explorer"
    } else {
        // xdg-open with no display either fails unseen or starts a terminal browser.
        if !super::file_dialog::dialogs_available() {
            return Err(no_file_manager(dir));
        }
        "xdg-open"
    };
    open_with(opener, dir)
}

fn open_with(opener: &str, dir: &std::path::Path) -> Result<(), String> {
    std::process::Command::new(opener)
        .arg(dir)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .map(|_| ())
        .map_err(|_| no_file_manager(dir))
}

fn no_file_manager(dir: &std::path::Path) -> String {
    format!("no file manager is available to open the folder; its path (select to copy): {}", dir.display())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_a_file_manager_the_message_says_so_and_gives_the_path() {
        let dir = std::path::Path::new("/data/runs/mine-2");
        let e = open_with("segdistill-no-such-file-manager", dir).unwrap_err();
        assert!(e.starts_with("no file manager is available"), "{e}");
        assert!(e.ends_with("/data/runs/mine-2"), "{e}");
        assert!(!e.contains("No such file"), "{e}");
    }
}
