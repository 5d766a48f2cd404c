//! TensorBoard event files: every run writes `RUN_DIR/tb/events.out.tfevents.<time>.<host>`, so
//! `tensorboard --logdir runs` compares runs with the tools people already use. The records are
//! TFRecord-framed (length, masked CRC-32C of the length, data, masked CRC-32C of the data) and
//! hold `tensorflow.Event` messages, encoded by prost from the field numbers of TensorFlow's
//! `event.proto` and `summary.proto`.
//!
//! A session writes its own file. A resumed session starts with a `SessionLog START` at the
//! checkpoint's step, which tells TensorBoard to drop what an earlier file logged after that step
//! (the steps a killed session trained past its last checkpoint, trained again now).

use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use anyhow::Context as _;

/// `tensorflow.Event`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Event {
    #[prost(double, tag = "1")]
    pub wall_time: f64,
    #[prost(int64, tag = "2")]
    pub step: i64,
    /// One of the event's contents (a `oneof` in TensorFlow's schema; one is set per event).
    #[prost(string, optional, tag = "3")]
    pub file_version: Option<String>,
    #[prost(message, optional, tag = "5")]
    pub summary: Option<Summary>,
    #[prost(message, optional, tag = "6")]
    pub session_log: Option<SessionLog>,
}

/// `tensorflow.Summary`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Summary {
    #[prost(message, repeated, tag = "1")]
    pub value: Vec<SummaryValue>,
}

/// `tensorflow.Summary.Value`: a scalar or an image under a tag.
#[derive(Clone, PartialEq, prost::Message)]
pub struct SummaryValue {
    #[prost(string, tag = "1")]
    pub tag: String,
    #[prost(float, optional, tag = "2")]
    pub simple_value: Option<f32>,
    #[prost(message, optional, tag = "4")]
    pub image: Option<SummaryImage>,
}

/// `tensorflow.Summary.Image`: an encoded PNG.
#[derive(Clone, PartialEq, prost::Message)]
pub struct SummaryImage {
    #[prost(int32, tag = "1")]
    pub height: i32,
    #[prost(int32, tag = "2")]
    pub width: i32,
    /// 3 = RGB.
    #[prost(int32, tag = "3")]
    pub colorspace: i32,
    #[prost(bytes = "vec", tag = "4")]
    pub encoded_image_string: Vec<u8>,
}

/// `tensorflow.SessionLog`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct SessionLog {
    /// 1 = START.
    #[prost(int32, tag = "1")]
    pub status: i32,
    #[prost(string, tag = "3")]
    pub msg: String,
}

const SESSION_START: i32 = 1;

/// TFRecord's checksum: CRC-32C, rotated and offset so that a CRC of CRCs stays informative.
fn masked_crc(bytes: &[u8]) -> u32 {
    let crc = crc32c::crc32c(bytes);
    crc.rotate_right(15).wrapping_add(0xa282_ead8)
}

/// One TFRecord: length, its masked CRC, the data, its masked CRC (all little-endian).
pub fn frame(data: &[u8]) -> Vec<u8> {
    let len = (data.len() as u64).to_le_bytes();
    let mut out = Vec::with_capacity(data.len() + 16);
    out.extend_from_slice(&len);
    out.extend_from_slice(&masked_crc(&len).to_le_bytes());
    out.extend_from_slice(data);
    out.extend_from_slice(&masked_crc(data).to_le_bytes());
    out
}

/// Reads every record of an event file back, checking both CRCs of each; a record cut short at
/// the end (a process killed mid-write) ends the list.
pub fn read_records(path: &Path) -> anyhow::Result<Vec<Event>> {
    use prost::Message as _;
    let mut bytes = Vec::new();
    File::open(path)
        .and_then(|mut f| f.read_to_end(&mut bytes))
        .with_context(|| format!("cannot read {}", path.display()))?;
    let mut events = Vec::new();
    let mut at = 0;
    while at + 12 <= bytes.len() {
        let len_bytes = &bytes[at..at + 8];
        let len = u64::from_le_bytes(len_bytes.try_into()?) as usize;
        let stored = u32::from_le_bytes(bytes[at + 8..at + 12].try_into()?);
        anyhow::ensure!(stored == masked_crc(len_bytes), "{}: bad length CRC at byte {at}", path.display());
        let Some(end) = (at + 12).checked_add(len).filter(|e| e + 4 <= bytes.len()) else { break };
        let data = &bytes[at + 12..end];
        let stored = u32::from_le_bytes(bytes[end..end + 4].try_into()?);
        anyhow::ensure!(stored == masked_crc(data), "{}: bad data CRC at byte {at}", path.display());
        events.push(Event::decode(data).with_context(|| format!("{}: undecodable event", path.display()))?);
        at = end + 4;
    }
    Ok(events)
}

/// The folder of a run's event files.
pub fn tb_dir(run_dir: &Path) -> PathBuf {
    run_dir.join(crate::train::run_folder::files::TENSORBOARD)
}

/// Appends events to this session's file; every record is flushed, so a killed run keeps all
/// it logged.
pub struct EventWriter {
    path: PathBuf,
    out: BufWriter<File>,
}

impl EventWriter {
    /// A new event file for this session in `RUN_DIR/tb/`; `resumed_at`: the checkpoint's step
    /// when the session continues a run.
    pub fn create(run_dir: &Path, resumed_at: Option<usize>) -> anyhow::Result<Self> {
        let dir = tb_dir(run_dir);
        std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        let host = std::env::var("HOSTNAME").ok().filter(|h| !h.is_empty()).unwrap_or_else(|| "segdistill".into());
        // Seconds as TensorBoard names them, then zero-padded nanoseconds: two sessions within a
        // second still sort in order (TensorBoard reads a folder's files in name order).
        let path = dir.join(format!("events.out.tfevents.{}.{host}.{:09}", now.as_secs(), now.subsec_nanos()));
        let file = File::create(&path).with_context(|| format!("cannot create {}", path.display()))?;
        let mut w = Self { path, out: BufWriter::new(file) };
        w.write(Event {
            wall_time: now.as_secs_f64(),
            file_version: Some("brain.Event:2".into()),
            ..Default::default()
        })?;
        if let Some(step) = resumed_at {
            let log = SessionLog { status: SESSION_START, msg: format!("resumed at step {step}") };
            w.write(Event {
                wall_time: now.as_secs_f64(),
                step: step as i64,
                session_log: Some(log),
                ..Default::default()
            })?;
        }
        Ok(w)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn write(&mut self, event: Event) -> anyhow::Result<()> {
        use prost::Message as _;
        self.out.write_all(&frame(&event.encode_to_vec()))?;
        self.out.flush().with_context(|| format!("cannot write {}", self.path.display()))
    }

    fn wall_time() -> f64 {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64())
    }

    /// Scalars at `step`; non-finite values are written too (TensorBoard shows them as such).
    pub fn scalars(&mut self, step: usize, values: &[(String, f64)]) -> anyhow::Result<()> {
        let value = values
            .iter()
            .map(|(tag, v)| SummaryValue { tag: tag.clone(), simple_value: Some(*v as f32), image: None })
            .collect();
        let summary = Some(Summary { value });
        self.write(Event { wall_time: Self::wall_time(), step: step as i64, summary, ..Default::default() })
    }

    /// An RGB image (PNG-encoded here) at `step`.
    pub fn image(&mut self, step: usize, tag: &str, img: &image::RgbImage) -> anyhow::Result<()> {
        let png = crate::data::image::encode_png(img)?;
        let image = SummaryImage {
            height: img.height() as i32,
            width: img.width() as i32,
            colorspace: 3,
            encoded_image_string: png,
        };
        let value = vec![SummaryValue { tag: tag.into(), simple_value: None, image: Some(image) }];
        let summary = Some(Summary { value });
        self.write(Event { wall_time: Self::wall_time(), step: step as i64, summary, ..Default::default() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_carry_tensorflows_masked_crc32c() {
        // CRC-32C of "123456789" is 0xE3069283 (the standard check value).
        assert_eq!(crc32c::crc32c(b"123456789"), 0xE306_9283);
        // Masking: rotate right by 15, add 0xa282ead8 (tensorflow/core/lib/hash/crc32c.h).
        assert_eq!(masked_crc(b"123456789"), 0xE306_9283u32.rotate_right(15).wrapping_add(0xa282_ead8));
        let framed = frame(b"abc");
        assert_eq!(framed.len(), 8 + 4 + 3 + 4);
        assert_eq!(&framed[..8], &3u64.to_le_bytes());
    }

    #[test]
    fn a_run_writes_events_that_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = EventWriter::create(dir.path(), None).unwrap();
        w.scalars(3, &[("train/loss".into(), 1.5), ("train/lr".into(), 0.01)]).unwrap();
        w.image(3, "overlays/best", &image::RgbImage::from_pixel(4, 2, image::Rgb([9, 8, 7]))).unwrap();
        let path = w.path().to_path_buf();
        drop(w);
        let events = read_records(&path).unwrap();
        assert_eq!(events[0].file_version.as_deref(), Some("brain.Event:2"));
        let s = &events[1].summary.as_ref().unwrap().value;
        assert_eq!((events[1].step, s[0].tag.as_str(), s[0].simple_value), (3, "train/loss", Some(1.5)));
        let img = events[2].summary.as_ref().unwrap().value[0].image.as_ref().unwrap();
        assert_eq!((img.width, img.height), (4, 2));
        assert!(img.encoded_image_string.starts_with(b"\x89PNG"));
        // A damaged record is reported, not skipped.
        let mut bytes = std::fs::read(&path).unwrap();
        let last = bytes.len() - 10;
        bytes[last] ^= 0xFF;
        std::fs::write(&path, &bytes).unwrap();
        assert!(read_records(&path).unwrap_err().to_string().contains("bad data CRC"));
        // A resumed session marks where it continues.
        let again = EventWriter::create(dir.path(), Some(7)).unwrap();
        let events = read_records(again.path()).unwrap();
        assert_eq!((events[1].step, events[1].session_log.as_ref().unwrap().status), (7, SESSION_START));
    }
}
