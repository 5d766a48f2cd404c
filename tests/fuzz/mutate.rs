//! Seeded random numbers and the mutations of an input.

use std::sync::Arc;

/// SplitMix64: small, seeded, good enough to pick mutations.
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (0 when `n` is 0).
    pub(crate) fn below(&mut self, n: usize) -> usize {
        if n == 0 { 0 } else { (self.next_u64() % n as u64) as usize }
    }

    pub(crate) fn chance(&mut self, one_in: usize) -> bool {
        self.below(one_in) == 0
    }

    pub(crate) fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// FNV-1a, to derive a per-target stream from the seed.
pub(crate) fn fnv(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

pub(crate) const INTERESTING_BYTES: [u8; 4] = [0, 0xff, 0x7f, 0x80];
pub(crate) const INTERESTING_U32: [u32; 10] =
    [0, 1, 0x7f, 0x80, 0xff, 0xffff, 0x4000_0000, 0x7fff_ffff, 0x8000_0000, 0xffff_ffff];
pub(crate) const INTERESTING_U64: [u64; 6] = [0, 1 << 32, 1 << 40, 1 << 62, i64::MAX as u64, u64::MAX];
/// Replacements for numbers (and values) in text formats.
pub(crate) const INTERESTING_TOKENS: [&str; 20] = [
    "0",
    "-1",
    "-0",
    "1e309",
    "-1e309",
    "NaN",
    "inf",
    "4294967296",
    "18446744073709551616",
    "99999999999999999999999999",
    "1.7976931348623157e308",
    "5e-324",
    "null",
    "true",
    "\"\"",
    "[]",
    "{}",
    "\"\\u0000\\ud800\"",
    "\u{feff}",
    "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[",
];

/// A position in `len`, biased to the first and last 64 KiB of large inputs, where headers,
/// pickles and zip directories live.
pub(crate) fn position(rng: &mut Rng, len: usize) -> usize {
    const EDGE: usize = 64 << 10;
    if len > 2 * EDGE {
        match rng.below(4) {
            0 | 1 => return rng.below(EDGE),
            2 => return len - EDGE + rng.below(EDGE),
            _ => {}
        }
    }
    rng.below(len)
}

/// A chunk length: mostly small, sometimes up to 4 KiB.
pub(crate) fn chunk_len(rng: &mut Rng) -> usize {
    1 + if rng.chance(4) { rng.below(4096) } else { rng.below(32) }
}

/// Applies 1 to 16 random mutations; `others` (other seeds of the target) feed splices.
pub(crate) fn mutate(data: &mut Vec<u8>, rng: &mut Rng, others: &[Arc<Vec<u8>>]) {
    let rounds = 1 + match rng.below(8) {
        0..=4 => 0,
        5 | 6 => rng.below(4),
        _ => rng.below(16),
    };
    for _ in 0..rounds {
        mutate_once(data, rng, others);
    }
}

pub(crate) fn mutate_once(data: &mut Vec<u8>, rng: &mut Rng, others: &[Arc<Vec<u8>>]) {
    if data.is_empty() {
        data.extend((0..chunk_len(rng)).map(|_| rng.next_u64() as u8));
        return;
    }
    let len = data.len();
    let at = position(rng, len);
    match rng.below(13) {
        // Bit flip.
        0 => data[at] ^= 1 << rng.below(8),
        // Interesting byte.
        1 => data[at] = *rng.pick(&INTERESTING_BYTES),
        // Random byte.
        2 => data[at] = rng.next_u64() as u8,
        // Truncation.
        3 => data.truncate(at),
        // Junk at the end: random, or one byte repeated.
        4 => {
            let n = chunk_len(rng);
            if rng.chance(2) {
                data.extend((0..n).map(|_| rng.next_u64() as u8));
            } else {
                let b = *rng.pick(&INTERESTING_BYTES);
                data.extend(std::iter::repeat_n(b, n));
            }
        }
        // Chunk duplication.
        5 => {
            let n = chunk_len(rng).min(len - at);
            let chunk = data[at..at + n].to_vec();
            let to = rng.below(len + 1);
            data.splice(to..to, chunk);
        }
        // Chunk deletion.
        6 => {
            let n = chunk_len(rng).min(len - at);
            data.drain(at..at + n);
        }
        // Splice from another seed: overwrite or insert.
        7 => {
            let other = rng.pick(others);
            if other.is_empty() {
                return;
            }
            let from = position(rng, other.len());
            let n = chunk_len(rng).min(other.len() - from);
            let chunk = &other[from..from + n];
            if rng.chance(2) {
                let end = (at + n).min(len);
                data.splice(at..end, chunk.iter().copied());
            } else {
                data.splice(at..at, chunk.iter().copied());
            }
        }
        // A u32 length field (either byte order) set to an interesting value.
        8 => {
            let mut v = *rng.pick(&INTERESTING_U32);
            if rng.chance(4) {
                v = (len as u32).wrapping_add(rng.below(3) as u32).wrapping_sub(1);
            }
            let bytes = if rng.chance(2) { v.to_le_bytes() } else { v.to_be_bytes() };
            let at = at.min(len.saturating_sub(4));
            let n = bytes.len().min(len - at);
            data[at..at + n].copy_from_slice(&bytes[..n]);
        }
        // A u64 length field (little-endian: safetensors headers, legacy storage sizes).
        9 => {
            let bytes = rng.pick(&INTERESTING_U64).to_le_bytes();
            let at = at.min(len.saturating_sub(8));
            let n = bytes.len().min(len - at);
            data[at..at + n].copy_from_slice(&bytes[..n]);
        }
        // Random bytes inserted.
        10 => {
            let n = chunk_len(rng);
            let junk: Vec<u8> = (0..n).map(|_| rng.next_u64() as u8).collect();
            data.splice(at..at, junk);
        }
        // A chunk copied over another place (length unchanged).
        11 => {
            let n = chunk_len(rng).min(len - at);
            let chunk = data[at..at + n].to_vec();
            let to = rng.below(len - n + 1);
            data[to..to + n].copy_from_slice(&chunk);
        }
        // Text: the number (or byte) at `at` replaced by an interesting token.
        _ => {
            let token = rng.pick(&INTERESTING_TOKENS).as_bytes();
            let (mut start, mut end) = (at, at);
            if data[at].is_ascii_digit() {
                while start > 0 && (data[start - 1].is_ascii_digit() || b".-eE+".contains(&data[start - 1])) {
                    start -= 1;
                }
                while end < len && (data[end].is_ascii_digit() || b".-eE+".contains(&data[end])) {
                    end += 1;
                }
            } else if rng.chance(2) {
                end = at + 1;
            }
            data.splice(start..end, token.iter().copied());
        }
    }
}
