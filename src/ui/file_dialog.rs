//! Native file and folder pickers (rfd through the XDG portal), always off the UI thread: a
//! dialog must never freeze the window, and with no display (CI, SSH) none is opened at all —
//! the text field next to every Browse… button always works.

use std::path::{Path, PathBuf};

use crossbeam_channel::{Receiver, bounded};

/// Whether a desktop session is there to show a dialog.
pub fn dialogs_available() -> bool {
    std::env::var_os("DISPLAY").is_some() || std::env::var_os("WAYLAND_DISPLAY").is_some()
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PickKind {
    Folder,
    /// A weights file (.pth, .pt, .safetensors).
    WeightsFile,
}

/// A dialog in flight; its answer arrives later.
pub struct PendingPick {
    rx: Receiver<Option<PathBuf>>,
}

impl PendingPick {
    /// Opens a dialog on its own thread; `None` if no display is available.
    pub fn open(kind: PickKind, title: &str, ctx: &egui::Context) -> Option<Self> {
        let title = title.to_string();
        Self::spawn(ctx, move || {
            let dialog = rfd::FileDialog::new().set_title(&title);
            match kind {
                PickKind::Folder => dialog.pick_folder(),
                PickKind::WeightsFile => dialog.add_filter("weights", &["pth", "pt", "safetensors"]).pick_file(),
            }
        })
    }

    /// A save dialog offering `file_name` in `dir` (created if missing), filtered to the name's
    /// extension; `None` if no display is available.
    pub fn save(title: &str, dir: &Path, file_name: &str, ctx: &egui::Context) -> Option<Self> {
        let (title, dir, file_name) = (title.to_string(), dir.to_path_buf(), file_name.to_string());
        Self::spawn(ctx, move || {
            std::fs::create_dir_all(&dir).ok(); // only a starting point: the user may go elsewhere
            let mut dialog = rfd::FileDialog::new().set_title(&title).set_directory(&dir).set_file_name(&file_name);
            if let Some(ext) = Path::new(&file_name).extension().and_then(|e| e.to_str()) {
                dialog = dialog.add_filter(ext.to_uppercase(), &[ext]);
            }
            dialog.save_file()
        })
    }

    fn spawn(ctx: &egui::Context, ask: impl FnOnce() -> Option<PathBuf> + Send + 'static) -> Option<Self> {
        if !dialogs_available() {
            return None;
        }
        let (tx, rx) = bounded(1);
        let ctx = ctx.clone();
        std::thread::Builder::new()
            .name("file-dialog".into())
            .spawn(move || {
                tx.send(ask()).ok(); // the UI may have moved on
                ctx.request_repaint();
            })
            .ok()?;
        Some(Self { rx })
    }

    /// `Some(answer)` once the user chose (or cancelled: `Some(None)`).
    pub fn poll(&self) -> Option<Option<PathBuf>> {
        self.rx.try_recv().ok()
    }
}
