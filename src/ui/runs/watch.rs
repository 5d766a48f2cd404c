//! Follows the runs folder on disk, so the Runs tab rescans when something changes there (a run
//! started by the command line, another process's progress, a run that ends) rather than when the
//! window happens to redraw. The folder itself and each run folder are watched, not the trees
//! beneath them (teacher caches hold many files that say nothing about runs). No drawing.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use notify::event::{AccessKind, AccessMode, EventKind, ModifyKind};
use notify::{RecommendedWatcher, RecursiveMode, Watcher as _};

use crate::train::checkpoint::checkpoints_dir;

/// How long the app waits after a change before it rescans: a training writes a burst of files
/// at an epoch's end, and its log a row per step; one rescan follows them all.
pub const DEBOUNCE: Duration = Duration::from_millis(400);

/// A watch on one runs folder.
pub struct RunsWatcher {
    pub dir: PathBuf,
    watcher: RecommendedWatcher,
    /// Something changed since the last [`Self::take_changed`].
    changed: Arc<AtomicBool>,
    /// Whether the tab is on screen: only then does a change ask for a repaint (an unseen change
    /// is picked up when the tab is shown).
    visible: Arc<AtomicBool>,
    /// The run folders watched besides the runs folder.
    runs: BTreeSet<PathBuf>,
}

/// Whether an event says a file changed: what the app itself does when it reads the runs (opens
/// and reads files, updates access times) must not count, or every scan would cause the next.
fn is_change(kind: &EventKind) -> bool {
    match kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        EventKind::Access(_) | EventKind::Modify(ModifyKind::Metadata(_)) => false,
        _ => true,
    }
}

impl RunsWatcher {
    /// Watches `dir` (which must exist); a change asks `ctx` for a repaint after [`DEBOUNCE`].
    pub fn start(ctx: &egui::Context, dir: &Path) -> Result<Self, String> {
        let changed = Arc::new(AtomicBool::new(true));
        let visible = Arc::new(AtomicBool::new(true));
        let (changed_w, visible_w, ctx) = (changed.clone(), visible.clone(), ctx.clone());
        let handler = move |event: notify::Result<notify::Event>| {
            // A failed event (the queue overflowed) may have been any change: rescan.
            if event.as_ref().is_ok_and(|e| !is_change(&e.kind)) {
                return;
            }
            changed_w.store(true, Ordering::Relaxed);
            if visible_w.load(Ordering::Relaxed) {
                ctx.request_repaint_after(DEBOUNCE);
            }
        };
        let mut watcher = notify::recommended_watcher(handler).map_err(|e| e.to_string())?;
        watcher.watch(dir, RecursiveMode::NonRecursive).map_err(|e| format!("{}: {e}", dir.display()))?;
        Ok(Self { dir: dir.to_path_buf(), watcher, changed, visible, runs: BTreeSet::new() })
    }

    /// Takes the news: whether something changed since the last call.
    pub fn take_changed(&self) -> bool {
        self.changed.swap(false, Ordering::Relaxed)
    }

    /// Whether something changed that has not been taken yet.
    pub fn has_changed(&self) -> bool {
        self.changed.load(Ordering::Relaxed)
    }

    pub fn set_visible(&self, visible: bool) {
        self.visible.store(visible, Ordering::Relaxed);
    }

    /// Watches each listed run folder (its log, checkpoints' arrival, its lock), and no longer
    /// the ones gone from the list.
    pub fn follow_runs<'a>(&mut self, listed: impl IntoIterator<Item = &'a Path>) {
        let listed: BTreeSet<PathBuf> = listed.into_iter().map(Path::to_path_buf).collect();
        for gone in self.runs.difference(&listed) {
            for path in [gone.clone(), checkpoints_dir(gone)] {
                self.watcher.unwatch(&path).ok(); // a deleted folder's watch is gone already
            }
        }
        let mut watched = BTreeSet::new();
        for dir in listed {
            if self.runs.contains(&dir) {
                watched.insert(dir);
                continue;
            }
            // A folder that cannot be watched (removed meanwhile) is still listed by the next
            // scan; a run without its checkpoints folder yet makes it in its own folder (seen).
            if self.watcher.watch(&dir, RecursiveMode::NonRecursive).is_ok() {
                self.watcher.watch(&checkpoints_dir(&dir), RecursiveMode::NonRecursive).ok();
                watched.insert(dir);
            }
        }
        self.runs = watched;
    }
}
