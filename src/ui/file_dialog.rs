//! Native file and folder pickers (rfd through the XDG portal), always off the UI thread: a
//! dialog must never freeze the window, and with no display (CI, SSH) none is opened at all —
//! the text field next to every Browse… button always works.

use std::path::PathBuf;

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
        if !dialogs_available() {
            return None;
        }
        let (tx, rx) = bounded(1);
        let title = title.to_string();
        let ctx = ctx.clone();
        std::thread::Builder::new()
            .name("file-dialog".into())
            .spawn(move || {
                let dialog = rfd::FileDialog::new().set_title(&title);
                let picked = match kind {
                    PickKind::Folder => dialog.pick_folder(),
                    PickKind::WeightsFile => dialog.add_filter("weights", &["pth", "pt", "safetensors"]).pick_file(),
                };
                tx.send(picked).ok(); // the UI may have moved on
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
