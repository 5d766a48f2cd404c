//! Terminal progress bars (on stderr; hidden automatically when stderr is not a terminal).

use indicatif::{ProgressBar, ProgressStyle};

/// A bar over `len` items with rate and ETA.
pub fn bar(len: u64, message: &str) -> ProgressBar {
    let pb = ProgressBar::new(len);
    let style = ProgressStyle::with_template(
        "{msg:>12} [{bar:32.cyan/blue}] {pos}/{len} ({per_sec}, {elapsed} elapsed, ETA {eta})",
    )
    .unwrap_or_else(|_| ProgressStyle::default_bar())
    .progress_chars("=> ");
    pb.set_style(style);
    pb.set_message(message.to_string());
    pb
}
