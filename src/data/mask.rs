//! Label masks: decoding palette / grayscale / RGB PNGs into class indices, and writing palette PNGs.
//!
//! The `image` crate expands palette PNGs to RGB, losing the indices, so masks are decoded with the
//! `png` crate directly. A palette PNG's *indices* are the labels (its colours are ignored); an RGB
//! mask is mapped back through the VOC colour map.

use std::collections::HashMap;
use std::io::{BufReader, Cursor};
use std::path::Path;

use super::classes::{VOID, voc_palette};
use super::error::{DataError, Result};
use super::image::check_decoded_size;

/// A label mask: one byte per pixel, row-major; 255 = void.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mask {
    pub width: u32,
    pub height: u32,
    pub data: Vec<u8>,
}

impl Mask {
    pub fn new(width: u32, height: u32, data: Vec<u8>) -> Self {
        assert_eq!(data.len(), width as usize * height as usize, "mask buffer size");
        Self { width, height, data }
    }

    pub fn filled(width: u32, height: u32, value: u8) -> Self {
        Self { width, height, data: vec![value; width as usize * height as usize] }
    }

    pub fn get(&self, x: u32, y: u32) -> u8 {
        self.data[y as usize * self.width as usize + x as usize]
    }

    pub fn set(&mut self, x: u32, y: u32, v: u8) {
        let w = self.width as usize;
        self.data[y as usize * w + x as usize] = v;
    }

    /// Pixel count per label value (all 256 values).
    pub fn histogram(&self) -> [u64; 256] {
        let mut h = [0u64; 256];
        for &v in &self.data {
            h[v as usize] += 1;
        }
        h
    }

    /// Maps every value through a 256-entry look-up table.
    pub fn map_values(&mut self, lut: &[u8; 256]) {
        for v in &mut self.data {
            *v = lut[*v as usize];
        }
    }
}

/// The pixel values of a label PNG before they are interpreted as classes.
#[derive(Debug)]
pub enum RawLabels {
    /// Palette indices or 8-bit (or smaller) gray values: used as labels directly.
    Index(Vec<u8>),
    /// 16-bit gray values.
    Wide(Vec<u16>),
    /// RGB triples (alpha dropped), to be mapped through a colour table.
    Rgb(Vec<[u8; 3]>),
}

/// A decoded label PNG.
#[derive(Debug)]
pub struct LabelImage {
    pub width: u32,
    pub height: u32,
    pub values: RawLabels,
}

const PNG_SIGNATURE: [u8; 8] = [0x89, b'P', b'N', b'G', 0x0d, 0x0a, 0x1a, 0x0a];

/// Reads and decodes a label PNG from disk.
pub fn read_label_png(path: &Path) -> Result<LabelImage> {
    let bytes = std::fs::read(path).map_err(|e| DataError::io(path, e))?;
    decode_label_png(&bytes, path)
}

/// Decodes a label PNG held in memory; `path` is only used in error messages.
pub fn decode_label_png(bytes: &[u8], path: &Path) -> Result<LabelImage> {
    if !bytes.starts_with(&PNG_SIGNATURE) {
        let reason = match bytes.get(..3) {
            Some([0xff, 0xd8, 0xff]) => "it is a JPEG".to_string(),
            _ if bytes.is_empty() => "the file is empty".to_string(),
            _ => "no PNG signature".to_string(),
        };
        return Err(DataError::NotPng { path: path.into(), reason });
    }
    let mut decoder = png::Decoder::new(BufReader::new(Cursor::new(bytes)));
    decoder.set_transformations(png::Transformations::IDENTITY);
    let mut reader = decoder.read_info().map_err(|e| DataError::decode(path, e))?;
    let (width, height) = (reader.info().width, reader.info().height);
    check_decoded_size(width as u64, height as u64, path)?;
    let size = reader.output_buffer_size().ok_or_else(|| DataError::decode(path, "image too large"))?;
    let mut buf = vec![0u8; size];
    let out = reader.next_frame(&mut buf).map_err(|e| DataError::decode(path, e))?;
    let (w, h) = (out.width, out.height);
    let n = w as usize * h as usize;
    let rows = buf.chunks(out.line_size).take(h as usize);
    use png::{BitDepth, ColorType};
    let values = match (out.color_type, out.bit_depth) {
        (ColorType::Indexed | ColorType::Grayscale, BitDepth::Eight) => {
            RawLabels::Index(rows.flat_map(|r| &r[..w as usize]).copied().collect())
        }
        (ColorType::Indexed | ColorType::Grayscale, d @ (BitDepth::One | BitDepth::Two | BitDepth::Four)) => {
            RawLabels::Index(rows.flat_map(|r| unpack_bits(r, d as u8, w as usize)).collect())
        }
        (ColorType::Grayscale, BitDepth::Sixteen) => RawLabels::Wide(
            rows.flat_map(|r| r[..2 * w as usize].chunks_exact(2).map(|c| u16::from_be_bytes([c[0], c[1]]))).collect(),
        ),
        (ColorType::GrayscaleAlpha, BitDepth::Eight) => {
            RawLabels::Index(rows.flat_map(|r| r[..2 * w as usize].iter().step_by(2)).copied().collect())
        }
        (ColorType::Rgb, BitDepth::Eight) => {
            RawLabels::Rgb(rows.flat_map(|r| r[..3 * w as usize].chunks_exact(3).map(|c| [c[0], c[1], c[2]])).collect())
        }
        (ColorType::Rgba, BitDepth::Eight) => {
            RawLabels::Rgb(rows.flat_map(|r| r[..4 * w as usize].chunks_exact(4).map(|c| [c[0], c[1], c[2]])).collect())
        }
        (ct, d) => {
            return Err(DataError::decode(
                path,
                format!("unsupported mask format {ct:?} at {d:?} bits; use an 8-bit palette or grayscale PNG"),
            ));
        }
    };
    let len = match &values {
        RawLabels::Index(v) => v.len(),
        RawLabels::Wide(v) => v.len(),
        RawLabels::Rgb(v) => v.len(),
    };
    if len != n {
        return Err(DataError::decode(path, "pixel data shorter than the header says"));
    }
    Ok(LabelImage { width: w, height: h, values })
}

fn unpack_bits(row: &[u8], depth: u8, width: usize) -> impl Iterator<Item = u8> + '_ {
    let per_byte = 8 / depth as usize;
    let mask = (1u16 << depth) as u8 - 1;
    (0..width).map(move |x| {
        let byte = row[x / per_byte];
        let shift = 8 - depth as usize * (x % per_byte + 1);
        (byte >> shift) & mask
    })
}

/// How a dataset's label values become class indices.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LabelEncoding {
    /// VOC: indices 0..num_classes and 255; RGB masks through the VOC palette.
    VocIndex { num_classes: u8 },
    /// Cityscapes `*_labelIds.png`: ids 0–33 mapped to train ids through the official table.
    CityscapesLabelIds,
    /// Values used as they are (predicted masks, `*_labelTrainIds.png`): 0..num_classes and 255.
    Plain { num_classes: u8 },
    /// A plain image/mask folder: classes 0..num_classes and `ignore` (read as void); RGB masks
    /// are mapped to indices through the classes file's colours before this encoding applies.
    Folder { num_classes: u8, ignore: u8 },
    /// ADE20K's "reduce zero label": value 0 ("other") is void and 1..=num_classes are the
    /// classes 0..num_classes (value − 1).
    ReduceZeroLabel { num_classes: u8 },
    /// Classes 0..num_classes with a dataset's own void value (CamVid's 11); 255 is void too.
    WithVoid { num_classes: u8, void: u8 },
}

impl LabelEncoding {
    fn expected(&self) -> String {
        match self {
            Self::VocIndex { num_classes } | Self::Plain { num_classes } => {
                format!("expected 0–{} or 255", num_classes - 1)
            }
            Self::CityscapesLabelIds => "expected Cityscapes label ids 0–33".into(),
            Self::Folder { num_classes, ignore } => {
                format!("expected the classes 0–{} of the classes file, or the ignore index {ignore}", num_classes - 1)
            }
            Self::ReduceZeroLabel { num_classes } => {
                format!("expected 0 (other, ignored) or the classes 1–{num_classes}")
            }
            Self::WithVoid { num_classes, void } => {
                format!("expected 0–{} or the void value {void}", num_classes - 1)
            }
        }
    }
}

/// Interprets a decoded label PNG as a class mask. Unknown values and colours are errors that
/// name the file, the value and how many pixels carry it.
pub fn labels_to_mask(img: LabelImage, encoding: LabelEncoding, path: &Path) -> Result<Mask> {
    let LabelImage { width, height, values } = img;
    let indices: Vec<u8> = match values {
        RawLabels::Index(v) => v,
        RawLabels::Wide(v) => {
            if let Some(&bad) = v.iter().find(|&&x| x > 255) {
                let pixels = v.iter().filter(|&&x| x == bad).count();
                return Err(DataError::UnknownLabel {
                    path: path.into(),
                    value: bad as u32,
                    pixels,
                    expected: encoding.expected(),
                });
            }
            v.into_iter().map(|x| x as u8).collect()
        }
        RawLabels::Rgb(v) => rgb_to_voc_indices(&v, path)?,
    };
    let mut mask = Mask::new(width, height, indices);
    match encoding {
        LabelEncoding::VocIndex { num_classes } | LabelEncoding::Plain { num_classes } => {
            check_values(&mask, |v| v < num_classes || v == VOID, encoding, path)?;
        }
        LabelEncoding::CityscapesLabelIds => {
            check_values(&mask, |v| v <= 33, encoding, path)?;
            mask.map_values(&super::classes::cityscapes_train_id_lut());
        }
        LabelEncoding::Folder { num_classes, ignore } => {
            check_values(&mask, |v| v < num_classes || v == ignore, encoding, path)?;
            if ignore != VOID {
                let mut lut: [u8; 256] = std::array::from_fn(|i| i as u8);
                lut[ignore as usize] = VOID;
                mask.map_values(&lut);
            }
        }
        LabelEncoding::ReduceZeroLabel { num_classes } => {
            check_values(&mask, |v| v <= num_classes, encoding, path)?;
            let lut: [u8; 256] = std::array::from_fn(|i| if i == 0 { VOID } else { (i - 1) as u8 });
            mask.map_values(&lut);
        }
        LabelEncoding::WithVoid { num_classes, void } => {
            check_values(&mask, |v| v < num_classes || v == void || v == VOID, encoding, path)?;
            let mut lut: [u8; 256] = std::array::from_fn(|i| i as u8);
            lut[void as usize] = VOID;
            mask.map_values(&lut);
        }
    }
    Ok(mask)
}

fn check_values(mask: &Mask, ok: impl Fn(u8) -> bool, encoding: LabelEncoding, path: &Path) -> Result<()> {
    let hist = mask.histogram();
    match (0..=255u8).find(|&v| hist[v as usize] > 0 && !ok(v)) {
        Some(bad) => Err(DataError::UnknownLabel {
            path: path.into(),
            value: bad as u32,
            pixels: hist[bad as usize] as usize,
            expected: encoding.expected(),
        }),
        None => Ok(()),
    }
}

fn rgb_to_voc_indices(pixels: &[[u8; 3]], path: &Path) -> Result<Vec<u8>> {
    let table: HashMap<[u8; 3], u8> = voc_palette().iter().enumerate().map(|(i, c)| (*c, i as u8)).collect();
    let mut out = Vec::with_capacity(pixels.len());
    for p in pixels {
        match table.get(p) {
            Some(&i) => out.push(i),
            None => {
                let pixels = pixels.iter().filter(|q| *q == p).count();
                return Err(DataError::UnknownColor { path: path.into(), color: *p, pixels });
            }
        }
    }
    Ok(out)
}

/// Reads a mask file and interprets it with `encoding`.
pub fn read_mask(path: &Path, encoding: LabelEncoding) -> Result<Mask> {
    labels_to_mask(read_label_png(path)?, encoding, path)
}

/// Encodes a mask as an 8-bit palette PNG with the given 256-entry palette (VOC's format).
pub fn encode_palette_png(mask: &Mask, palette: &[[u8; 3]; 256]) -> Result<Vec<u8>, png::EncodingError> {
    let mut out = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut out, mask.width, mask.height);
        enc.set_color(png::ColorType::Indexed);
        enc.set_depth(png::BitDepth::Eight);
        enc.set_palette(palette.iter().flatten().copied().collect::<Vec<u8>>());
        let mut writer = enc.write_header()?;
        writer.write_image_data(&mask.data)?;
        writer.finish()?;
    }
    Ok(out)
}

/// Writes a mask as a VOC palette PNG, atomically.
pub fn write_palette_png(mask: &Mask, path: &Path) -> std::io::Result<()> {
    let bytes = encode_palette_png(mask, &voc_palette()).map_err(std::io::Error::other)?;
    crate::util::fs::write_atomic(path, &bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::classes::voc_color;

    fn gray_png(w: u32, h: u32, data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut enc = png::Encoder::new(&mut out, w, h);
        enc.set_color(png::ColorType::Grayscale);
        enc.set_depth(png::BitDepth::Eight);
        let mut wr = enc.write_header().unwrap();
        wr.write_image_data(data).unwrap();
        wr.finish().unwrap();
        out
    }

    fn rgb_png(w: u32, h: u32, data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut enc = png::Encoder::new(&mut out, w, h);
        enc.set_color(png::ColorType::Rgb);
        enc.set_depth(png::BitDepth::Eight);
        let mut wr = enc.write_header().unwrap();
        wr.write_image_data(data).unwrap();
        wr.finish().unwrap();
        out
    }

    const VOC21: LabelEncoding = LabelEncoding::VocIndex { num_classes: 21 };

    #[test]
    fn reduce_zero_label_and_a_void_value_map_to_void() {
        let path = Path::new("a.png");
        let ade = LabelEncoding::ReduceZeroLabel { num_classes: 150 };
        let m = labels_to_mask(decode_label_png(&gray_png(4, 1, &[0, 1, 150, 13]), path).unwrap(), ade, path).unwrap();
        assert_eq!(m.data, vec![VOID, 0, 149, 12], "0 → void, v → v − 1");
        let err = labels_to_mask(decode_label_png(&gray_png(1, 1, &[151]), path).unwrap(), ade, path).unwrap_err();
        assert!(err.to_string().contains("151"), "{err}");
        let camvid = LabelEncoding::WithVoid { num_classes: 11, void: 11 };
        let m =
            labels_to_mask(decode_label_png(&gray_png(4, 1, &[0, 10, 11, 255]), path).unwrap(), camvid, path).unwrap();
        assert_eq!(m.data, vec![0, 10, VOID, VOID]);
        let err = labels_to_mask(decode_label_png(&gray_png(1, 1, &[12]), path).unwrap(), camvid, path).unwrap_err();
        assert!(err.to_string().contains("void value 11"), "{err}");
    }

    #[test]
    fn palette_png_round_trips_indices() {
        let mask = Mask::new(3, 2, vec![0, 1, 20, 255, 7, 15]);
        let bytes = encode_palette_png(&mask, &voc_palette()).unwrap();
        let back = labels_to_mask(decode_label_png(&bytes, Path::new("m.png")).unwrap(), VOC21, Path::new("m.png"));
        assert_eq!(back.unwrap(), mask);
    }

    #[test]
    fn rgb_mask_maps_through_voc_palette() {
        let labels = [0u8, 15, 255, 3];
        let rgb: Vec<u8> = labels.iter().flat_map(|&l| voc_color(l)).collect();
        let bytes = rgb_png(2, 2, &rgb);
        let m =
            labels_to_mask(decode_label_png(&bytes, Path::new("x.png")).unwrap(), VOC21, Path::new("x.png")).unwrap();
        assert_eq!(m.data, labels);
    }

    #[test]
    fn unknown_rgb_colour_names_file_and_colour() {
        let bytes = rgb_png(1, 1, &[1, 2, 3]);
        let err = labels_to_mask(decode_label_png(&bytes, Path::new("odd.png")).unwrap(), VOC21, Path::new("odd.png"))
            .unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("odd.png") && msg.contains("[1, 2, 3]"), "{msg}");
    }

    #[test]
    fn unknown_label_value_is_reported_with_count() {
        let bytes = gray_png(2, 1, &[21, 21]);
        let err = labels_to_mask(decode_label_png(&bytes, Path::new("g.png")).unwrap(), VOC21, Path::new("g.png"))
            .unwrap_err();
        match err {
            DataError::UnknownLabel { value, pixels, .. } => assert_eq!((value, pixels), (21, 2)),
            e => panic!("unexpected {e}"),
        }
    }

    #[test]
    fn cityscapes_ids_map_to_train_ids() {
        let bytes = gray_png(4, 1, &[7, 26, 0, 33]);
        let m = labels_to_mask(
            decode_label_png(&bytes, Path::new("c.png")).unwrap(),
            LabelEncoding::CityscapesLabelIds,
            Path::new("c.png"),
        )
        .unwrap();
        assert_eq!(m.data, [0, 13, 255, 18]);
    }

    #[test]
    fn non_png_and_truncated_png_are_errors_naming_the_file() {
        let jpeg_like = [0xffu8, 0xd8, 0xff, 0xe0, 0, 0];
        let e = decode_label_png(&jpeg_like, Path::new("a.png")).unwrap_err();
        assert!(
            matches!(e, DataError::NotPng { .. }) && e.to_string().contains("a.png") && e.to_string().contains("JPEG")
        );
        let good = gray_png(8, 8, &[1; 64]);
        let e = decode_label_png(&good[..good.len() / 2], Path::new("b.png")).unwrap_err();
        assert!(e.to_string().contains("b.png"), "{e}");
    }

    #[test]
    fn absurd_sizes_are_refused_before_decoding() {
        use crate::data::image::tests::png_claiming;
        for (name, (w, h)) in [("wide.png", (40_000, 2)), ("huge.png", (12_000, 9_000))] {
            let err = decode_label_png(&png_claiming(w, h), Path::new(name)).unwrap_err();
            let msg = err.to_string();
            assert!(matches!(err, DataError::Decode { .. }), "{name}: {msg}");
            assert!(msg.contains(name) && msg.contains("megapixels"), "{name}: {msg}");
        }
    }

    #[test]
    fn sub_byte_depths_unpack() {
        let row = [0b1011_0001u8];
        let v: Vec<u8> = unpack_bits(&row, 2, 4).collect();
        assert_eq!(v, [2, 3, 0, 1]);
        let v: Vec<u8> = unpack_bits(&row, 4, 2).collect();
        assert_eq!(v, [0xb, 0x1]);
    }
}
