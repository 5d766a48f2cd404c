//! Decoding photos (JPEG / PNG) into RGB8, with errors that name the file.

use std::path::Path;

use image::{ImageFormat, RgbImage};

use super::error::{DataError, Result};

/// The most pixels an image (or mask) may have: 100 megapixels, 4× a 24 MP photo. A header
/// claiming more (a corrupt file, or a panorama nobody meant to train on) is refused before any
/// pixel buffer is allocated, instead of taking gigabytes or aborting the process.
pub const MAX_IMAGE_PIXELS: u64 = 100_000_000;

/// The longest side an image (or mask) may have.
pub const MAX_IMAGE_SIDE: u32 = 32_768;

/// Why a `width`×`height` image is refused, if it is.
pub fn check_image_size(width: u64, height: u64) -> std::result::Result<(), String> {
    if width <= MAX_IMAGE_SIDE as u64 && height <= MAX_IMAGE_SIDE as u64 && width * height <= MAX_IMAGE_PIXELS {
        return Ok(());
    }
    Err(format!(
        "{width}×{height} pixels, above the limit of {} megapixels and {MAX_IMAGE_SIDE} pixels a side",
        MAX_IMAGE_PIXELS / 1_000_000
    ))
}

/// The decode error of a file whose header claims `width`×`height`, if that is too large.
pub fn check_decoded_size(width: u64, height: u64, path: &Path) -> Result<()> {
    check_image_size(width, height)
        .map_err(|reason| DataError::decode(path, format!("its header says {reason}; downscale it if it is genuine")))
}

/// Reads and decodes an image file into RGB8.
pub fn read_rgb(path: &Path) -> Result<RgbImage> {
    let bytes = std::fs::read(path).map_err(|e| DataError::io(path, e))?;
    decode_rgb(&bytes, path)
}

/// Decodes an in-memory image; `path` is only used in error messages.
pub fn decode_rgb(bytes: &[u8], path: &Path) -> Result<RgbImage> {
    if bytes.is_empty() {
        return Err(DataError::decode(path, "the file is empty"));
    }
    let format = image::guess_format(bytes)
        .map_err(|_| DataError::decode(path, "not a JPEG or PNG image (unrecognised header)"))?;
    // The JPEG decoder tolerates truncated files (it fills the missing rows with grey), which
    // would silently train on half-grey images: insist on the end-of-image marker.
    if format == ImageFormat::Jpeg && !jpeg_has_end_marker(bytes) {
        return Err(DataError::decode(path, "truncated JPEG: the end-of-image marker is missing"));
    }
    if format == ImageFormat::Jpeg
        && let Some(img) = decode_jpeg_like_pil(bytes, path)?
    {
        return Ok(img);
    }
    let (width, height) = image::ImageReader::with_format(std::io::Cursor::new(bytes), format)
        .into_dimensions()
        .map_err(|e| DataError::decode(path, e))?;
    check_decoded_size(width as u64, height as u64, path)?;
    let img = image::load_from_memory_with_format(bytes, format).map_err(|e| DataError::decode(path, e))?;
    Ok(img.into_rgb8())
}

/// What libjpeg made of a file (errors aside).
enum Libjpeg {
    /// A colour space libjpeg cannot turn into RGB (CMYK).
    Unsupported,
    /// The header claims more pixels than [`check_image_size`] allows (width, height).
    Oversized(usize, usize),
    /// Width, height and RGB8 pixels.
    Decoded(usize, usize, Vec<u8>),
}

/// Decodes a JPEG with libjpeg's own algorithms (islow IDCT, fancy upsampling), which is what
/// PIL uses: pixels are bit-identical to `PIL.Image.open(p).convert("RGB")`, so a model sees the
/// same input as in PyTorch (pure-Rust decoders differ by a few levels on 1–15 % of pixels).
/// `None` for colour spaces libjpeg cannot turn into RGB (CMYK): the caller falls back.
fn decode_jpeg_like_pil(bytes: &[u8], path: &Path) -> Result<Option<RgbImage>> {
    use mozjpeg::ColorSpace;
    // libjpeg reports fatal errors by unwinding (without the panic hook): catch them here.
    let decoded = std::panic::catch_unwind(|| -> std::io::Result<Libjpeg> {
        let d = mozjpeg::Decompress::new_mem(bytes)?;
        if matches!(d.color_space(), ColorSpace::JCS_CMYK | ColorSpace::JCS_YCCK) {
            return Ok(Libjpeg::Unsupported);
        }
        // The header is read: refuse a giant frame before libjpeg allocates it.
        if check_image_size(d.width() as u64, d.height() as u64).is_err() {
            return Ok(Libjpeg::Oversized(d.width(), d.height()));
        }
        let mut started = d.rgb()?;
        let (w, h) = (started.width(), started.height());
        let data = started.read_scanlines::<u8>()?;
        started.finish()?;
        Ok(Libjpeg::Decoded(w, h, data))
    });
    let reason = match decoded {
        Ok(Ok(Libjpeg::Unsupported)) => return Ok(None),
        Ok(Ok(Libjpeg::Oversized(w, h))) => return check_decoded_size(w as u64, h as u64, path).map(|()| None),
        Ok(Ok(Libjpeg::Decoded(w, h, data))) => {
            return RgbImage::from_raw(w as u32, h as u32, data)
                .map(Some)
                .ok_or_else(|| DataError::decode(path, "decoder returned too few pixels"));
        }
        Ok(Err(e)) => e.to_string(),
        Err(payload) => payload
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "libjpeg error".into()),
    };
    Err(DataError::decode(path, reason))
}

/// True if an EOI marker (FF D9) sits in the file's tail. Entropy-coded data never contains
/// FF D9 (0xFF is byte-stuffed), so a file cut short has none there; a little trailing
/// garbage after EOI, which some cameras write, is tolerated.
fn jpeg_has_end_marker(bytes: &[u8]) -> bool {
    let tail = &bytes[bytes.len().saturating_sub(4096)..];
    tail.windows(2).any(|w| w == [0xff, 0xd9])
}

/// Encodes an RGB image as JPEG at the given quality (1–100).
pub fn encode_jpeg(img: &RgbImage, quality: u8) -> image::ImageResult<Vec<u8>> {
    let mut out = Vec::new();
    let enc = image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, quality);
    img.write_with_encoder(enc)?;
    Ok(out)
}

/// Encodes an RGB image as PNG.
pub fn encode_png(img: &RgbImage) -> image::ImageResult<Vec<u8>> {
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, ImageFormat::Png)?;
    Ok(out.into_inner())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    fn sample_jpeg() -> Vec<u8> {
        let img = RgbImage::from_fn(64, 48, |x, y| image::Rgb([(x * 4) as u8, (y * 5) as u8, 128]));
        encode_jpeg(&img, 90).unwrap()
    }

    #[test]
    fn jpeg_round_trip_decodes() {
        let img = decode_rgb(&sample_jpeg(), Path::new("ok.jpg")).unwrap();
        assert_eq!(img.dimensions(), (64, 48));
    }

    #[test]
    fn truncated_jpeg_is_an_error_naming_the_file() {
        let bytes = sample_jpeg();
        for cut in [bytes.len() - 2, bytes.len() / 2, 40] {
            let err = decode_rgb(&bytes[..cut], Path::new("cut.jpg")).unwrap_err();
            assert!(err.to_string().contains("cut.jpg"), "cut at {cut}: {err}");
        }
    }

    /// `jpeg` with the frame header (SOF0) claiming `width`×`height`.
    fn with_claimed_size(mut jpeg: Vec<u8>, width: u16, height: u16) -> Vec<u8> {
        let sof = jpeg.windows(2).position(|m| m == [0xff, 0xc0]).expect("baseline JPEG");
        jpeg[sof + 5..sof + 7].copy_from_slice(&height.to_be_bytes());
        jpeg[sof + 7..sof + 9].copy_from_slice(&width.to_be_bytes());
        jpeg
    }

    /// A PNG whose header claims `width`×`height` (its one data chunk is a stub).
    pub(crate) fn png_claiming(width: u32, height: u32) -> Vec<u8> {
        let mut out = Vec::new();
        {
            let mut enc = png::Encoder::new(&mut out, width, height);
            enc.set_color(png::ColorType::Grayscale);
            enc.set_depth(png::BitDepth::One);
            let mut writer = enc.write_header().unwrap();
            writer.write_chunk(png::chunk::IDAT, &[0x78, 0x9c, 0x03, 0x00]).unwrap();
        }
        out
    }

    #[test]
    fn absurd_sizes_are_refused_before_decoding() {
        let cases = [
            ("wide.jpg", with_claimed_size(sample_jpeg(), 40_000, 48)),
            ("huge.jpg", with_claimed_size(sample_jpeg(), 12_000, 9_000)),
            ("wide.png", png_claiming(40_000, 1)),
            ("huge.png", png_claiming(12_000, 9_000)),
        ];
        for (name, bytes) in cases {
            let err = decode_rgb(&bytes, Path::new(name)).unwrap_err();
            let msg = err.to_string();
            assert!(matches!(err, DataError::Decode { .. }), "{name}: {msg}");
            assert!(msg.contains(name) && msg.contains("megapixels"), "{name}: {msg}");
        }
        assert_eq!(check_image_size(6000, 4000), Ok(()));
        assert_eq!(check_image_size(32_768, 3000), Ok(()));
        assert!(check_image_size(32_769, 1).is_err() && check_image_size(10_001, 10_000).is_err());
    }

    #[test]
    fn garbage_and_empty_files_are_errors() {
        assert!(decode_rgb(b"hello world, not an image", Path::new("g.jpg")).is_err());
        assert!(decode_rgb(b"", Path::new("e.jpg")).unwrap_err().to_string().contains("empty"));
    }
}
