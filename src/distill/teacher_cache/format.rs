//! On-disk layout of one cached image: a small header, then f16 maps (C, H, W) in order.
//!
//! ```text
//! b"SDTCACHE" · u32 version · u32 src_width · u32 src_height · u32 map count
//! per map: u32 name length · name (UTF-8) · u32 channels · u32 height · u32 width
//! per map: channels·height·width f16, little-endian
//! ```
//! Files are written atomically; a file that is short, long or has a wrong header is reported as
//! corrupt (and rebuilt by the next cache build).

use std::path::Path;

use half::f16;

const MAGIC: &[u8; 8] = b"SDTCACHE";
const VERSION: u32 = 1;

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

/// Everything cached for one image.
#[derive(Clone, Debug, PartialEq)]
pub struct CachedImage {
    /// Size of the original image (before any resize), to check it still matches the dataset.
    pub src_width: u32,
    pub src_height: u32,
    pub maps: Vec<CachedMap>,
}

impl CachedImage {
    pub fn map(&self, name: &str) -> Option<&CachedMap> {
        self.maps.iter().find(|m| m.name == name)
    }

    pub fn encoded_len(&self) -> usize {
        let header: usize = 8 + 4 * 4 + self.maps.iter().map(|m| 4 + m.name.len() + 12).sum::<usize>();
        header + self.maps.iter().map(|m| 2 * m.data.len()).sum::<usize>()
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.encoded_len());
        out.extend_from_slice(MAGIC);
        for v in [VERSION, self.src_width, self.src_height, self.maps.len() as u32] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        for m in &self.maps {
            out.extend_from_slice(&(m.name.len() as u32).to_le_bytes());
            out.extend_from_slice(m.name.as_bytes());
            for v in [m.channels, m.height, m.width] {
                out.extend_from_slice(&(v as u32).to_le_bytes());
            }
        }
        for m in &self.maps {
            for v in &m.data {
                out.extend_from_slice(&v.to_bits().to_le_bytes());
            }
        }
        out
    }

    /// Parses a file's bytes; the error says what is wrong (the caller names the file).
    pub fn decode(bytes: &[u8]) -> Result<Self, String> {
        let mut r = Reader { bytes, pos: 0 };
        let header = Header::parse(&mut r)?;
        header.check_len(bytes.len())?;
        let mut maps = Vec::with_capacity(header.maps.len());
        for (name, channels, height, width) in header.maps {
            let raw = r.take(2 * channels * height * width)?;
            let data = raw.chunks_exact(2).map(|b| f16::from_bits(u16::from_le_bytes([b[0], b[1]]))).collect();
            maps.push(CachedMap { name, channels, height, width, data });
        }
        Ok(Self { src_width: header.src_width, src_height: header.src_height, maps })
    }

    pub fn read(path: &Path) -> Result<Self, String> {
        let bytes = std::fs::read(path).map_err(|e| e.to_string())?;
        Self::decode(&bytes)
    }
}

/// What a file's header says: the image size and each map's (name, channels, height, width).
#[derive(Clone, Debug, PartialEq)]
pub struct Header {
    pub src_width: u32,
    pub src_height: u32,
    pub maps: Vec<(String, usize, usize, usize)>,
    /// Bytes the header itself takes.
    len: usize,
}

/// Headers are small (names and 12 bytes per map); more than this is a damaged file.
const MAX_HEADER: u64 = 64 << 10;

impl Header {
    fn parse(r: &mut Reader) -> Result<Self, String> {
        if r.take(8)? != MAGIC {
            return Err("not a segdistill teacher-cache file".into());
        }
        let version = r.u32()?;
        if version != VERSION {
            return Err(format!("format version {version}, expected {VERSION}"));
        }
        let (src_width, src_height, count) = (r.u32()?, r.u32()?, r.u32()? as usize);
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
        Ok(Self { src_width, src_height, maps, len: r.pos })
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

    /// Reads and checks only the header and the file's length: whether an entry is complete,
    /// without reading its maps.
    pub fn read_checked(path: &Path) -> Result<Self, String> {
        use std::io::Read as _;
        let file = std::fs::File::open(path).map_err(|e| e.to_string())?;
        let file_len = file.metadata().map_err(|e| e.to_string())?.len();
        let mut head = Vec::new();
        file.take(MAX_HEADER).read_to_end(&mut head).map_err(|e| e.to_string())?;
        let header = Self::parse(&mut Reader { bytes: &head, pos: 0 })?;
        header.check_len(usize::try_from(file_len).map_err(|_| "file too large".to_string())?)?;
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
        let header = Header::read_checked(&path).unwrap();
        assert_eq!((header.src_width, header.maps.len()), (31, 2));
        std::fs::write(&path, &bytes[..bytes.len() - 1]).unwrap();
        assert!(Header::read_checked(&path).unwrap_err().contains("truncated"));
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(CachedImage::decode(&longer).unwrap_err().contains("trailing"));
        let mut wrong = bytes.clone();
        wrong[0] = b'X';
        assert!(CachedImage::decode(&wrong).unwrap_err().contains("not a segdistill"));
    }
}
