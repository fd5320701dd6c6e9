//! Generated-meme renderer for premium users.
//!
//! This module owns:
//! - the **template registry**: the template PNGs and `templates.json` under
//!   `data/templates/` are embedded in the binary and decoded once, in
//!   [`Renderer::embedded`];
//! - **caption layout**: normalising the caption (upper case, whitespace,
//!   glyphs the font lacks), word-wrapping it and picking the largest font
//!   size that fits the caption's box;
//! - **drawing**: classic meme text (white fill, black outline) composited on
//!   a copy of the template;
//! - **PNG encoding** with fixed settings, so identical inputs always give
//!   byte-identical output.
//!
//! The code is split by stage, in the order a render runs them: `templates`
//! (the embedded registry, decoded once), `layout` (caption text, wrapping
//! and sizing into its box) and `raster` (drawing the text onto the image and
//! encoding the PNG). This file keeps the public types and [`Renderer::render`],
//! which runs the stages in turn.
//!
//! It must not do I/O (no files, no network, no clock, no randomness) and
//! knows nothing about users, premium checks or charging: callers decide
//! who may render and what it costs, then hand over a template id and two
//! strings.

mod layout;
mod raster;
mod templates;

use std::fmt;

use ab_glyph::FontRef;
use image::RgbImage;

use layout::{Band, CaptionBox, FontMetrics, fit_caption};
use raster::{draw_caption, encode_png};

/// Longest caption accepted, in characters; anything longer is cut here so a
/// huge input cannot make layout or drawing slow.
pub const MAX_CAPTION_CHARS: usize = 200;

/// What the registry knows about one template.
#[derive(Debug, Clone)]
pub struct TemplateInfo {
    /// Stable identifier used in requests, e.g. `"two-buttons"`.
    pub id: String,
    /// Human-readable name.
    pub title: String,
    /// One sentence saying what the template shows and suits: what a caption's meaning is
    /// compared with to pick a template.
    pub description: String,
    /// Words describing what the template suits, used to pick a template
    /// that fits a query.
    pub tags: Vec<String>,
    /// Image width in pixels.
    pub width: u32,
    /// Image height in pixels.
    pub height: u32,
}

/// A finished meme.
pub struct RenderedMeme {
    /// The encoded PNG (8-bit RGB).
    pub png: Vec<u8>,
    /// Width in pixels (the template's width).
    pub width: u32,
    /// Height in pixels (the template's height).
    pub height: u32,
}

impl fmt::Debug for RenderedMeme {
    // Printing the PNG bytes would flood logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RenderedMeme")
            .field("png_bytes", &self.png.len())
            .field("width", &self.width)
            .field("height", &self.height)
            .finish()
    }
}

/// Why loading templates or rendering failed.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    /// No template has this id.
    #[error("unknown template {0}")]
    UnknownTemplate(String),
    /// `templates.json` could not be parsed.
    #[error("invalid template manifest")]
    Manifest(#[from] serde_json::Error),
    /// A template entry is inconsistent (missing file, duplicate id, size
    /// mismatch, unsupported manifest version).
    #[error("invalid template {id}: {reason}")]
    InvalidTemplate {
        /// The template id (or file name) concerned.
        id: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A template PNG could not be decoded.
    #[error("template {id} could not be decoded")]
    Decode {
        /// The template id.
        id: String,
        /// The decoder's error.
        #[source]
        source: image::ImageError,
    },
    /// The embedded font could not be parsed.
    #[error("embedded font could not be parsed")]
    Font(#[from] ab_glyph::InvalidFont),
    /// The PNG encoder failed.
    #[error("PNG encoding failed")]
    Encode(#[source] image::ImageError),
}

/// Renders captions onto meme templates.
///
/// Templates are decoded and the font parsed once, at construction; a
/// `Renderer` is immutable afterwards, so one instance can be shared between
/// threads (it is `Send + Sync`).
pub struct Renderer {
    font: FontRef<'static>,
    metrics: FontMetrics,
    infos: Vec<TemplateInfo>,
    images: Vec<RgbImage>,
}

impl fmt::Debug for Renderer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Renderer")
            .field("templates", &self.infos)
            .finish_non_exhaustive()
    }
}

impl Renderer {
    /// All templates, in manifest order.
    pub fn templates(&self) -> &[TemplateInfo] {
        &self.infos
    }

    /// Classic meme text on the template: `top` at the top, `bottom` at the
    /// bottom (either may be empty).
    ///
    /// Captions are upper-cased, whitespace is collapsed, characters the
    /// font cannot draw (emoji, control characters) are dropped, and input
    /// past [`MAX_CAPTION_CHARS`] characters is cut. Each caption is wrapped
    /// and sized to fill its box as much as possible.
    pub fn render(
        &self,
        template_id: &str,
        top: &str,
        bottom: &str,
    ) -> Result<RenderedMeme, RenderError> {
        let index = self
            .infos
            .iter()
            .position(|t| t.id == template_id)
            .ok_or_else(|| RenderError::UnknownTemplate(template_id.to_owned()))?;
        let mut canvas = self.images[index].clone();
        let (width, height) = canvas.dimensions();
        for (text, band) in [(top, Band::Top), (bottom, Band::Bottom)] {
            let caption = self.shape(text);
            if caption.glyphs.is_empty() {
                continue;
            }
            let area = CaptionBox::new(width, height, band);
            let layout = fit_caption(&caption, &self.metrics, &area);
            draw_caption(&mut canvas, &caption, &layout, &self.metrics);
        }
        let png = encode_png(&canvas)?;
        Ok(RenderedMeme { png, width, height })
    }
}

#[cfg(test)]
mod tests {
    use super::layout::style;
    use super::*;
    use image::ImageEncoder;
    use image::codecs::png::PngEncoder;
    use std::sync::OnceLock;

    pub(super) fn renderer() -> &'static Renderer {
        static R: OnceLock<Renderer> = OnceLock::new();
        R.get_or_init(|| Renderer::embedded().expect("embedded templates load"))
    }

    fn decode(png: &[u8]) -> RgbImage {
        image::load_from_memory_with_format(png, image::ImageFormat::Png)
            .expect("output is a valid PNG")
            .into_rgb8()
    }

    fn template(id: &str) -> RgbImage {
        let r = renderer();
        let i = r.infos.iter().position(|t| t.id == id).unwrap();
        r.images[i].clone()
    }

    /// Rows `y0..y1` of `a` and `b` that differ, with near-white and
    /// near-black counts among the changed pixels.
    fn band_diff(a: &RgbImage, b: &RgbImage, y0: u32, y1: u32) -> (usize, usize, usize) {
        let (mut changed, mut white, mut black) = (0, 0, 0);
        for y in y0..y1 {
            for x in 0..a.width() {
                let (p, q) = (a.get_pixel(x, y), b.get_pixel(x, y));
                if p != q {
                    changed += 1;
                    if q.0.iter().all(|&v| v >= 235) {
                        white += 1;
                    }
                    if q.0.iter().all(|&v| v <= 25) {
                        black += 1;
                    }
                }
            }
        }
        (changed, white, black)
    }

    #[test]
    fn renderer_is_shareable_between_threads() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Renderer>();
    }

    #[test]
    fn identical_inputs_give_identical_bytes() {
        let r = renderer();
        let a = r.render("two-buttons", "Tabs", "Spaces").unwrap();
        let b = r.render("two-buttons", "Tabs", "Spaces").unwrap();
        assert_eq!(a.png, b.png);
        // A fresh renderer must agree too (no state carried between calls).
        let fresh = Renderer::embedded().unwrap();
        let c = fresh.render("two-buttons", "Tabs", "Spaces").unwrap();
        assert_eq!(a.png, c.png);
        let d = r.render("two-buttons", "Tabs", "Spaces!").unwrap();
        assert_ne!(a.png, d.png);
    }

    #[test]
    fn output_is_a_png_of_the_template_size() {
        let r = renderer();
        for t in r.templates() {
            let meme = r.render(&t.id, "top text", "bottom text").unwrap();
            assert_eq!((meme.width, meme.height), (t.width, t.height));
            let img = decode(&meme.png);
            assert_eq!(img.dimensions(), (t.width, t.height), "{}", t.id);
        }
    }

    #[test]
    fn captions_are_drawn_in_their_bands() {
        for id in ["this-is-fine", "expanding-brain", "office-desk"] {
            let base = template(id);
            let h = base.height();
            let meme = renderer()
                .render(id, "one does not simply", "render a meme")
                .unwrap();
            let img = decode(&meme.png);
            let band = (h as f32 * 0.3) as u32;
            for (y0, y1) in [(0, band), (h - band, h)] {
                let (changed, white, black) = band_diff(&base, &img, y0, y1);
                assert!(
                    changed > 1000,
                    "{id}: only {changed} pixels changed in {y0}..{y1}"
                );
                assert!(
                    white > 200,
                    "{id}: only {white} white text pixels in {y0}..{y1}"
                );
                assert!(
                    black > 200,
                    "{id}: only {black} black outline pixels in {y0}..{y1}"
                );
            }
            // The middle of the image is left alone.
            let (changed, _, _) = band_diff(&base, &img, band, h - band);
            assert_eq!(changed, 0, "{id}: middle changed");
        }
    }

    #[test]
    fn empty_captions_leave_the_template_unchanged() {
        let base = template("galaxy");
        let h = base.height();
        let plain = decode(&renderer().render("galaxy", "", "").unwrap().png);
        assert_eq!(plain, base);
        // Whitespace-only and glyph-less captions count as empty.
        let blank = decode(&renderer().render("galaxy", " \t\n ", "😀🎉").unwrap().png);
        assert_eq!(blank, base);
        // Only the band with text changes.
        let top_only = decode(&renderer().render("galaxy", "hello", "").unwrap().png);
        assert_eq!(band_diff(&base, &top_only, h / 2, h).0, 0);
        let bottom_only = decode(&renderer().render("galaxy", "", "hello").unwrap().png);
        assert_eq!(band_diff(&base, &bottom_only, 0, h / 2).0, 0);
    }

    /// Bounding box of pixels that differ from the template.
    fn changed_bounds(a: &RgbImage, b: &RgbImage) -> Option<(u32, u32, u32, u32)> {
        let mut bounds: Option<(u32, u32, u32, u32)> = None;
        for (x, y, p) in b.enumerate_pixels() {
            if a.get_pixel(x, y) != p {
                let e = bounds.get_or_insert((x, y, x, y));
                e.0 = e.0.min(x);
                e.1 = e.1.min(y);
                e.2 = e.2.max(x);
                e.3 = e.3.max(y);
            }
        }
        bounds
    }

    #[test]
    fn long_captions_stay_inside_the_margins() {
        let r = renderer();
        let long_words = "supercalifragilisticexpialidocious ".repeat(10);
        let cases = [
            "W".repeat(500),
            "WWWW MMMM ".repeat(40),
            long_words,
            "a ".repeat(300),
            "Ünïcödé ñ ÉÉÉ ".repeat(20),
        ];
        for id in ["two-buttons", "stonks"] {
            let base = template(id);
            let (w, h) = base.dimensions();
            let margin_x = (w as f32 * style::MARGIN_X).round() as u32;
            let margin_y = (h as f32 * style::MARGIN_Y).round() as u32;
            let box_h = (h as f32 * style::BOX_HEIGHT).round() as u32;
            for text in &cases {
                let top = decode(&r.render(id, text, "").unwrap().png);
                let (x0, y0, x1, y1) = changed_bounds(&base, &top).expect("text drawn");
                assert!(x0 >= margin_x && x1 < w - margin_x, "{id} top x {x0}..{x1}");
                assert!(
                    y0 >= margin_y && y1 <= margin_y + box_h,
                    "{id} top y {y0}..{y1}"
                );
                let bottom = decode(&r.render(id, "", text).unwrap().png);
                let (x0, y0, x1, y1) = changed_bounds(&base, &bottom).expect("text drawn");
                assert!(
                    x0 >= margin_x && x1 < w - margin_x,
                    "{id} bottom x {x0}..{x1}"
                );
                assert!(
                    y0 >= h - margin_y - box_h && y1 < h - margin_y,
                    "{id} bottom y {y0}..{y1}"
                );
            }
        }
    }

    #[test]
    fn tiny_templates_do_not_panic() {
        for (w, h) in [(1, 1), (10, 10), (40, 30), (300, 60)] {
            let img = RgbImage::from_pixel(w, h, image::Rgb([90, 120, 200]));
            let mut png = Vec::new();
            PngEncoder::new(&mut png)
                .write_image(img.as_raw(), w, h, image::ExtendedColorType::Rgb8)
                .unwrap();
            let manifest = format!(
                r#"{{"version":1,"templates":[{{"id":"t","title":"T","file":"t.png","tags":[],"width":{w},"height":{h}}}]}}"#
            );
            let r = Renderer::from_manifest(&manifest, &[("t.png", png.as_slice())]).unwrap();
            let meme = r
                .render("t", "a caption far too long for this", "WWWWWWWW")
                .unwrap();
            assert_eq!(decode(&meme.png).dimensions(), (w, h));
        }
    }

    #[test]
    fn unknown_template_is_an_error() {
        match renderer().render("no-such-template", "a", "b") {
            Err(RenderError::UnknownTemplate(id)) => assert_eq!(id, "no-such-template"),
            other => panic!("expected UnknownTemplate, got {other:?}"),
        }
    }
}
