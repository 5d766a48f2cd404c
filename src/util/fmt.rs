//! How numbers read for people: durations and byte counts, one definition for the CLI, the app
//! and the reports.

/// "1h02m", "3m07s", "42 s"; "?" for an unknown (non-finite) duration. Under a minute the
/// seconds alone: a short run must not read "0m00s".
pub fn format_duration(secs: f64) -> String {
    if !secs.is_finite() {
        return "?".into();
    }
    let s = secs.max(0.0).round() as u64;
    match s {
        3600.. => format!("{}h{:02}m", s / 3600, s / 60 % 60),
        60.. => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{s} s"),
    }
}

/// "999 B", "1.5 MB", "2.0 GB" (powers of 1000, as disks and downloads are labelled).
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KB", "MB", "GB", "TB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1000.0 && unit + 1 < UNITS.len() {
        v /= 1000.0;
        unit += 1;
    }
    if unit == 0 { format!("{n} B") } else { format!("{v:.1} {}", UNITS[unit]) }
}

/// Text from a file name, a sample id or a run name, safe to print: control characters (escape
/// sequences that would move a terminal's cursor or recolour it, tabs, line breaks) are shown as
/// Rust escapes (`\u{1b}`), everything else as it is.
pub fn escaped(text: &str) -> String {
    text.chars()
        .flat_map(|c| {
            let shown: Vec<char> = if c.is_control() { c.escape_default().collect() } else { vec![c] };
            shown
        })
        .collect()
}

/// Like [`escaped`] for a whole message, whose own line breaks stay line breaks.
pub fn escaped_message(text: &str) -> String {
    text.split('\n').map(escaped).collect::<Vec<_>>().join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_shown_escaped() {
        assert_eq!(escaped("run\u{1b}[31mred\tx\n"), "run\\u{1b}[31mred\\tx\\n");
        assert_eq!(escaped("voc-étè 2007_000032"), "voc-étè 2007_000032");
    }

    #[test]
    fn durations_and_sizes_read_as_people_write_them() {
        assert_eq!(format_duration(187.0), "3m07s");
        assert_eq!(format_duration(3720.0), "1h02m");
        assert_eq!(format_duration(42.0), "42 s");
        assert_eq!(format_duration(0.3), "0 s");
        assert_eq!(format_duration(60.0), "1m00s");
        assert_eq!(format_duration(f64::NAN), "?");
        assert_eq!(human_bytes(999), "999 B");
        assert_eq!(human_bytes(1_999_639_040), "2.0 GB");
        assert_eq!(human_bytes(1_500_000), "1.5 MB");
    }
}
