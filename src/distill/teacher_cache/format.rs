//! On-disk layout of one cached image: a small header, then f16 maps (C, H, W) in order.
//!
//! ```text
//! b"SDTCACHE" · u32 version · u32 src_width · u32 src_height
//! source image: u64 length · u64 modification time (ns since 1970, 0 unknown) · 16 bytes SHA-256 prefix of its bytes
//! u32 CRC-32 of the map data · u32 map count
//! per map: u32 name length · name (UTF-8) · u32 channels · u32 height · u32 width
//! per map: channels·height·width f16, little-endian
//! ```
//! Files are written atomically. The source stamp ties an entry to the exact image it was made
//! from (an image replaced in place gets a new entry); the CRC catches damaged data. A file that is
//! short, long, of another version, or whose data fails the CRC is reported as corrupt (and rebuilt
//! by the next cache build).

use std::path::Path;

use half::f16;

const MAGIC: &[u8; 8] = b"SDTCACHE";
const VERSION: u32 = 2;

/// One teacher map (logits or a feature map) over the base-resized image, stored as f16.
#[derive(Clone, Debug, PartialEq)]
pub struct CachedMap {
    pub name: String,
    pub channels: usize,
    pub height: usize,
    pub width: usize,
    pub data: Vec<f16>,
}

impl CachedMap {
    pub fn from_f32(name: &str, (channels, height, width): (usize, usize, usize), values: &[f32]) -> Self {
        debug_assert_eq!(values.len(), channels * height * width);
        Self { name: name.into(), channels, height, width, data: values.iter().map(|&v| f16::from_f32(v)).collect() }
    }

    pub fn plane(&self, c: usize) -> &[f16] {
        let n = self.height * self.width;
        &self.data[c * n..(c + 1) * n]
    }
}

/// Which image file an entry was made from: its length and modification time (the cheap check)
/// and a hash of its bytes (the decisive one, when the cheap check differs).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SourceStamp {
    pub len: u64,
    /// Nanoseconds since 1970 (0: unknown).
    pub modified_ns: u64,
    pub hash: [u8; 16],
}

impl SourceStamp {
    /// Length and modification time of `path` (no hash: only read when they differ).
    pub fn metadata_of(path: &Path) -> std::io::Result<(u64, u64)> {
        let meta = std::fs::metadata(path)?;
        let modified = meta.modified().ok().and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok());
        Ok((meta.len(), modified.map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))))
    }

    /// The stamp of a file's current content.
    pub fn of_file(path: &Path) -> std::io::Result<Self> {
        let (len, modified_ns) = Self::metadata_of(path)?;
        let bytes = std::fs::read(path)?;
        Ok(Self { len, modified_ns, hash: content_hash(&bytes) })
    }

    /// Whether `path` still holds the bytes this stamp was made from. Same length and time: yes
    /// without reading it; otherwise the bytes decide (a copied or touched file is still current).
    pub fn matches_file(&self, path: &Path) -> bool {
        match Self::metadata_of(path) {
            Ok((len, modified_ns)) if len == self.len && modified_ns == self.modified_ns && modified_ns != 0 => true,
            Ok((len, _)) if len != self.len => false,
            Ok(_) => std::fs::read(path).is_ok_and(|b| content_hash(&b) == self.hash),
            Err(_) => false,
        }
    }
}

fn content_hash(bytes: &[u8]) -> [u8; 16] {
    use sha2::Digest as _;
    let digest = sha2::Sha256::digest(bytes);
    let mut out = [0u8; 16];
    out.copy_from_slice(&digest[..16]);
    out
}

/// Everything cached for one image.
#[derive(Clone, Debug, PartialEq)]
pub struct CachedImage {
    /// Size of the original image (before any resize), to check it still matches the dataset.
    pub src_width: u32,
    pub src_height: u32,
    /// The image file the maps were computed from.
    pub source: SourceStamp,
    pub maps: Vec<CachedMap>,
}

impl CachedImage {
    pub fn map(&self, name: &str) -> Option<&CachedMap> {
        self.maps.iter().find(|m| m.name == name)
    }

    pub fn encoded_len(&self) -> usize {
        let header: usize =
            8 + 3 * 4 + STAMP_LEN + 2 * 4 + self.maps.iter().map(|m| 4 + m.name.len() + 12).sum::<usize>();
        header + self.maps.iter().map(|m| 2 * m.data.len()).sum::<usize>()
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.encoded_len());
        out.extend_from_slice(MAGIC);
        for v in [VERSION, self.src_width, self.src_height] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        out.extend_from_slice(&self.source.len.to_le_bytes());
        out.extend_from_slice(&self.source.modified_ns.to_le_bytes());
        out.extend_from_slice(&self.source.hash);
        let crc_at = out.len();
        out.extend_from_slice(&[0; 4]); // the CRC, filled in once the data is written
        out.extend_from_slice(&(self.maps.len() as u32).to_le_bytes());
        for m in &self.maps {
            out.extend_from_slice(&(m.name.len() as u32).to_le_bytes());
            out.extend_from_slice(m.name.as_bytes());
            for v in [m.channels, m.height, m.width] {
                out.extend_from_slice(&(v as u32).to_le_bytes());
            }
        }
        let data_at = out.len();
        for m in &self.maps {
            for v in &m.data {
                out.extend_from_slice(&v.to_bits().to_le_bytes());
            }
        }
        let crc = crc32fast::hash(&out[data_at..]);
        out[crc_at..crc_at + 4].copy_from_slice(&crc.to_le_bytes());
        out
    }

    /// Parses a file's bytes; the error says what is wrong (the caller names the file).
    pub fn decode(bytes: &[u8]) -> Result<Self, String> {
        let header = Header::parse_verified(bytes)?;
        let mut r = Reader { bytes, pos: header.len };
        let mut maps = Vec::with_capacity(header.maps.len());
        for (name, channels, height, width) in header.maps {
            let raw = r.take(2 * channels * height * width)?;
            let data = raw.chunks_exact(2).map(|b| f16::from_bits(u16::from_le_bytes([b[0], b[1]]))).collect();
            maps.push(CachedMap { name, channels, height, width, data });
        }
        Ok(Self { src_width: header.src_width, src_height: header.src_height, source: header.source, maps })
    }

    pub fn read(path: &Path) -> Result<Self, String> {
        let bytes = crate::util::fs::read_regular(path).map_err(|e| e.to_string())?;
        Self::decode(&bytes)
    }
}

/// What a file's header says: the image size and each map's (name, channels, height, width).
#[derive(Clone, Debug, PartialEq)]
pub struct Header {
    pub src_width: u32,
    pub src_height: u32,
    pub source: SourceStamp,
    /// CRC-32 of everything after the header.
    data_crc: u32,
    pub maps: Vec<(String, usize, usize, usize)>,
    /// Bytes the header itself takes.
    len: usize,
}

/// Bytes of the source stamp in the header.
const STAMP_LEN: usize = 8 + 8 + 16;

impl Header {
    fn parse(r: &mut Reader) -> Result<Self, String> {
        if r.take(8)? != MAGIC {
            return Err("not a segdistill teacher-cache file".into());
        }
        let version = r.u32()?;
        if version != VERSION {
            return Err(format!("format version {version}, this segdistill writes {VERSION}"));
        }
        let (src_width, src_height) = (r.u32()?, r.u32()?);
        let stamp = r.take(STAMP_LEN)?;
        let u64_at = |at: usize| u64::from_le_bytes(stamp[at..at + 8].try_into().unwrap_or([0; 8]));
        let mut hash = [0u8; 16];
        hash.copy_from_slice(&stamp[16..32]);
        let source = SourceStamp { len: u64_at(0), modified_ns: u64_at(8), hash };
        let (data_crc, count) = (r.u32()?, r.u32()? as usize);
        if count > 64 {
            return Err(format!("{count} maps in the header"));
        }
        let mut maps = Vec::with_capacity(count);
        for _ in 0..count {
            let len = r.u32()? as usize;
            let name = String::from_utf8(r.take(len)?.to_vec()).map_err(|_| "map name is not UTF-8".to_string())?;
            let (c, h, w) = (r.u32()? as usize, r.u32()? as usize, r.u32()? as usize);
            c.checked_mul(h)
                .and_then(|v| v.checked_mul(w))
                .and_then(|v| v.checked_mul(2))
                .ok_or("map size overflows")?;
            maps.push((name, c, h, w));
        }
        Ok(Self { src_width, src_height, source, data_crc, maps, len: r.pos })
    }

    /// Checks that a file of `file_len` bytes holds exactly the maps the header announces.
    fn check_len(&self, file_len: usize) -> Result<(), String> {
        let data = self.maps.iter().try_fold(0usize, |acc, (_, c, h, w)| acc.checked_add(2 * c * h * w));
        let expected = data.and_then(|d| d.checked_add(self.len)).ok_or("map size overflows")?;
        match file_len.cmp(&expected) {
            std::cmp::Ordering::Less => Err(format!("truncated ({file_len} bytes, {expected} expected)")),
            std::cmp::Ordering::Greater => Err(format!("{} bytes of trailing data", file_len - expected)),
            std::cmp::Ordering::Equal => Ok(()),
        }
    }

    /// Reads a whole entry and checks its header, length and checksum, without decoding the maps:
    /// whether an entry can be used.
    pub fn read_verified(path: &Path) -> Result<Self, String> {
        Self::parse_verified(&crate::util::fs::read_regular(path).map_err(|e| e.to_string())?)
    }

    /// The header of a whole file's bytes, after checking the length and the data's checksum.
    fn parse_verified(bytes: &[u8]) -> Result<Self, String> {
        let header = Self::parse(&mut Reader { bytes, pos: 0 })?;
        header.check_len(bytes.len())?;
        if crc32fast::hash(&bytes[header.len..]) != header.data_crc {
            return Err("its data fails the checksum (damaged file)".into());
        }
        Ok(header)
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.bytes.len());
        let end = end.ok_or_else(|| format!("truncated ({} bytes, more expected)", self.bytes.len()))?;
        let s = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn u32(&mut self) -> Result<u32, String> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn example() -> CachedImage {
        let logits: Vec<f32> = (0..2 * 3 * 4).map(|i| i as f32 * 0.25 - 2.0).collect();
        let feat: Vec<f32> = (0..5 * 2 * 2).map(|i| (i as f32).sin()).collect();
        CachedImage {
            src_width: 31,
            src_height: 22,
            source: SourceStamp { len: 1234, modified_ns: 5678, hash: [7; 16] },
            maps: vec![
                CachedMap::from_f32("logits", (2, 3, 4), &logits),
                CachedMap::from_f32("layer4", (5, 2, 2), &feat),
            ],
        }
    }

    #[test]
    fn round_trips_and_rejects_damaged_files() {
        let img = example();
        let bytes = img.encode();
        assert_eq!(bytes.len(), img.encoded_len());
        assert_eq!(CachedImage::decode(&bytes).unwrap(), img);
        let truncated = CachedImage::decode(&bytes[..bytes.len() - 1]).unwrap_err();
        assert!(truncated.contains("truncated"), "{truncated}");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("e.tc");
        std::fs::write(&path, &bytes).unwrap();
        let header = Header::read_verified(&path).unwrap();
        assert_eq!((header.src_width, header.maps.len()), (31, 2));
        std::fs::write(&path, &bytes[..bytes.len() - 1]).unwrap();
        assert!(Header::read_verified(&path).unwrap_err().contains("truncated"));
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(CachedImage::decode(&longer).unwrap_err().contains("trailing"));
        let mut wrong = bytes.clone();
        wrong[0] = b'X';
        assert!(CachedImage::decode(&wrong).unwrap_err().contains("not a segdistill"));
        // One flipped bit in the data: same length, same header, caught by the checksum.
        let mut flipped = bytes.clone();
        let last = flipped.len() - 3;
        flipped[last] ^= 0x10;
        assert!(CachedImage::decode(&flipped).unwrap_err().contains("checksum"));
    }

    #[test]
    fn a_stamp_matches_its_file_until_the_bytes_change() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("img.jpg");
        std::fs::write(&path, b"first image bytes").unwrap();
        let stamp = SourceStamp::of_file(&path).unwrap();
        assert!(stamp.matches_file(&path));
        // Same length, other bytes (an image replaced in place).
        std::fs::write(&path, b"other image bytes").unwrap();
        assert!(!stamp.matches_file(&path));
        // Same bytes, new time (a copy or a touch): still current.
        std::fs::write(&path, b"first image bytes").unwrap();
        let touched = SourceStamp { modified_ns: 1, ..stamp };
        assert!(touched.matches_file(&path));
    }
}
