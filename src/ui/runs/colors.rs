//! Each listed run's colour, the same in the table's swatch and in the curves: distinct among the
//! runs listed, and kept by a run for as long as it is listed (a run that appears takes the first
//! colour no listed run has; one that goes away frees its colour). No drawing.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use egui::Color32;

/// Tableau-10: distinguishable on light and dark backgrounds; the first ten runs take these.
const PALETTE: [(u8, u8, u8); 10] = [
    (31, 119, 180),
    (255, 127, 14),
    (44, 160, 44),
    (214, 39, 40),
    (148, 103, 189),
    (140, 86, 75),
    (227, 119, 194),
    (127, 127, 127),
    (188, 189, 34),
    (23, 190, 207),
];

/// The colour of slot `slot`: the palette's, then hues a golden angle apart (each new one as far
/// as it can be from those before it), alternating two lightnesses.
fn slot_color(slot: usize) -> Color32 {
    if let Some(&(r, g, b)) = PALETTE.get(slot) {
        return Color32::from_rgb(r, g, b);
    }
    let k = slot - PALETTE.len();
    let hue = (0.05 + k as f32 * 0.618_034).fract();
    let value = if k.is_multiple_of(2) { 0.85 } else { 0.6 };
    egui::ecolor::Hsva::new(hue, 0.75, value, 1.0).into()
}

/// Run folder → its colour slot.
#[derive(Default)]
pub struct RunColors {
    slots: BTreeMap<PathBuf, usize>,
}

impl RunColors {
    /// Follows a new listing: runs no longer listed free their slots; new runs take the lowest
    /// free ones, in name order on the first listing (the same colours at every start of the app
    /// for the same runs), in listing order afterwards.
    pub fn follow<'a>(&mut self, listed: impl IntoIterator<Item = &'a Path>) {
        let mut listed: Vec<&Path> = listed.into_iter().collect();
        if self.slots.is_empty() {
            listed.sort();
        }
        self.slots.retain(|dir, _| listed.contains(&dir.as_path()));
        for dir in listed {
            if self.slots.contains_key(dir) {
                continue;
            }
            let free = (0..).find(|s| !self.slots.values().any(|taken| taken == s)).unwrap_or_default();
            self.slots.insert(dir.to_path_buf(), free);
        }
    }

    /// The colour of the run in `dir` (a run not listed yet gets the colour after the listed ones'
    /// until the next listing gives it its own).
    pub fn color(&self, dir: &Path) -> Color32 {
        let slot = self.slots.get(dir).copied().unwrap_or_else(|| self.slots.values().max().map_or(0, |m| m + 1));
        slot_color(slot)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dirs(names: &[&str]) -> Vec<PathBuf> {
        names.iter().map(|n| PathBuf::from("runs").join(n)).collect()
    }

    #[test]
    fn listed_runs_have_distinct_colours_that_they_keep() {
        let mut colors = RunColors::default();
        let first = dirs(&["a", "b", "c", "d", "e", "f", "g", "h"]);
        colors.follow(first.iter().map(PathBuf::as_path));
        let before: Vec<Color32> = first.iter().map(|d| colors.color(d)).collect();
        let mut distinct = before.clone();
        distinct.sort_by_key(|c| c.to_array());
        distinct.dedup();
        assert_eq!(distinct.len(), first.len(), "{before:?}");
        // "c" is removed and two runs appear: the others keep their colours, the first newcomer
        // takes the freed one, and every colour is still distinct.
        let mut now = first.clone();
        now.remove(2);
        now.insert(0, PathBuf::from("runs/new-1"));
        now.insert(0, PathBuf::from("runs/new-2"));
        colors.follow(now.iter().map(PathBuf::as_path));
        for (dir, color) in first.iter().zip(&before) {
            if dir != &first[2] {
                assert_eq!(colors.color(dir), *color, "{} kept its colour", dir.display());
            }
        }
        assert_eq!(colors.color(Path::new("runs/new-2")), before[2], "the freed colour is taken first");
        let all: std::collections::HashSet<[u8; 4]> = now.iter().map(|d| colors.color(d).to_array()).collect();
        assert_eq!(all.len(), now.len());
    }

    #[test]
    fn many_runs_still_get_distinct_colours() {
        let names: Vec<String> = (0..40).map(|i| format!("run-{i:02}")).collect();
        let listed: Vec<PathBuf> = names.iter().map(|n| PathBuf::from(n.as_str())).collect();
        let mut colors = RunColors::default();
        colors.follow(listed.iter().map(PathBuf::as_path));
        let all: std::collections::HashSet<[u8; 4]> = listed.iter().map(|d| colors.color(d).to_array()).collect();
        assert_eq!(all.len(), listed.len());
    }
}
