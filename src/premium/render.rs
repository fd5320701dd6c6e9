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
//! It must not do I/O (no files, no network, no clock, no randomness) and
//! knows nothing about users, premium checks or charging: callers decide
//! who may render and what it costs, then hand over a template id and two
//! strings.

use std::fmt;

use ab_glyph::{Font, FontRef, GlyphId, Outline, OutlinedGlyph, PxScale, PxScaleFactor, point};
use image::codecs::png::{CompressionType, FilterType, PngEncoder};
use image::{ImageEncoder, RgbImage};
use serde::Deserialize;

/// Longest caption accepted, in characters; anything longer is cut here so a
/// huge input cannot make layout or drawing slow.
pub const MAX_CAPTION_CHARS: usize = 200;

/// The manifest written by `examples/draw_templates.rs`.
const MANIFEST_JSON: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/data/templates/templates.json"
));

/// Embeds template files by name. `include_bytes!` needs literal paths, so
/// every file listed in `templates.json` must also be listed here (a unit
/// test checks both directions).
macro_rules! embed_templates {
    ($($file:literal),* $(,)?) => {
        &[$(($file, include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/data/templates/", $file)))),*]
    };
}

const EMBEDDED_FILES: &[(&str, &[u8])] = embed_templates![
    "two-buttons.png",
    "approve-disapprove.png",
    "expanding-brain.png",
    "this-is-fine.png",
    "sunset-cat.png",
    "pointing-at-sign.png",
    "galaxy.png",
    "office-desk.png",
    "stonks.png",
    "rain-cloud.png",
];

/// Layout constants, as fractions of the image size unless noted.
mod style {
    /// Horizontal margin on each side, as a fraction of the image width.
    pub const MARGIN_X: f32 = 0.035;
    /// Gap between the image edge and the top/bottom caption box.
    pub const MARGIN_Y: f32 = 0.02;
    /// Height of each caption box.
    pub const BOX_HEIGHT: f32 = 0.28;
    /// Most lines a caption is wrapped into before the size is shrunk further.
    pub const MAX_LINES: usize = 4;
    /// Largest em size, as a fraction of the image width (a short caption on
    /// a 600 px image gets about 64 px text).
    pub const MAX_EM: f32 = 0.107;
    /// Smallest em size in pixels; below this text stops being readable.
    pub const MIN_EM: f32 = 12.0;
    /// Smallest em size tried before splitting words that do not fit on a
    /// line: a long word is better shrunk a little than cut, but not to
    /// the point of being unreadable.
    pub const MIN_EM_WHOLE_WORDS: f32 = 20.0;
    /// Baseline-to-baseline distance in ems: tight, like classic memes, but
    /// enough that accents on one line clear the line above.
    pub const LINE_SPACING: f32 = 1.12;
    /// Outline radius in ems, and its clamp in pixels.
    pub const STROKE_EM: f32 = 0.075;
    pub const STROKE_MIN: f32 = 1.5;
    pub const STROKE_MAX: f32 = 5.0;
    /// Room left below the last baseline even when no glyph descends, so the
    /// bottom caption does not jump when a comma or a Q appears.
    pub const DESCENT_EM: f32 = 0.08;
}

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

#[derive(Deserialize)]
struct Manifest {
    version: u32,
    templates: Vec<ManifestEntry>,
}

#[derive(Deserialize)]
struct ManifestEntry {
    id: String,
    title: String,
    #[serde(default)]
    description: String,
    file: String,
    tags: Vec<String>,
    width: u32,
    height: u32,
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
    /// Uses the templates embedded in the binary (`data/templates/*`,
    /// included at compile time) and the embedded Noto Sans Bold font.
    pub fn embedded() -> Result<Renderer, RenderError> {
        Renderer::from_manifest(MANIFEST_JSON, EMBEDDED_FILES)
    }

    /// Builds a renderer from a manifest (the `templates.json` format) and
    /// the template files it names, as `(file name, PNG bytes)` pairs.
    /// Templates keep the manifest's order.
    pub fn from_manifest(
        manifest_json: &str,
        files: &[(&str, &[u8])],
    ) -> Result<Renderer, RenderError> {
        let manifest: Manifest = serde_json::from_str(manifest_json)?;
        if manifest.version != 1 {
            return Err(RenderError::InvalidTemplate {
                id: "templates.json".into(),
                reason: format!("unsupported manifest version {}", manifest.version),
            });
        }
        let mut infos: Vec<TemplateInfo> = Vec::with_capacity(manifest.templates.len());
        let mut images = Vec::with_capacity(manifest.templates.len());
        for entry in manifest.templates {
            let invalid = |reason: String| RenderError::InvalidTemplate {
                id: entry.id.clone(),
                reason,
            };
            if infos.iter().any(|t| t.id == entry.id) {
                return Err(invalid("duplicate id".into()));
            }
            let bytes = files
                .iter()
                .find(|(name, _)| *name == entry.file)
                .map(|(_, bytes)| *bytes)
                .ok_or_else(|| invalid(format!("file {} is not embedded", entry.file)))?;
            let image = image::load_from_memory_with_format(bytes, image::ImageFormat::Png)
                .map_err(|source| RenderError::Decode {
                    id: entry.id.clone(),
                    source,
                })?
                .into_rgb8();
            if image.dimensions() != (entry.width, entry.height) {
                return Err(invalid(format!(
                    "manifest says {}x{}, image is {}x{}",
                    entry.width,
                    entry.height,
                    image.width(),
                    image.height()
                )));
            }
            infos.push(TemplateInfo {
                id: entry.id,
                title: entry.title,
                description: entry.description,
                tags: entry.tags,
                width: entry.width,
                height: entry.height,
            });
            images.push(image);
        }
        let font = FontRef::try_from_slice(notosans::BOLD_TTF)?;
        let metrics = FontMetrics::new(&font);
        Ok(Renderer {
            font,
            metrics,
            infos,
            images,
        })
    }

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

    /// Normalises `text` and looks up each character's glyph once, so that
    /// trying many font sizes is plain arithmetic.
    fn shape(&self, text: &str) -> Caption {
        let normalized = normalize_caption(text, |c| self.font.glyph_id(c).0 != 0);
        let glyphs = normalized
            .chars()
            .map(|c| {
                let id = self.font.glyph_id(c);
                ShapedGlyph {
                    is_space: c == ' ',
                    id,
                    advance: self.font.h_advance_unscaled(id),
                    outline: self.font.outline(id),
                }
            })
            .collect::<Vec<_>>();
        let kerning = glyphs
            .windows(2)
            .map(|pair| self.font.kern_unscaled(pair[0].id, pair[1].id))
            .collect();
        Caption { glyphs, kerning }
    }
}

// ---------------------------------------------------------------------------
// Caption text
// ---------------------------------------------------------------------------

/// Cuts `text` to [`MAX_CAPTION_CHARS`] characters. A cut caption ends at
/// a word boundary when one is close to the limit, and gets an ellipsis so
/// the reader can tell it was cut.
fn cap_length(text: &str) -> String {
    let mut chars = text.chars();
    let mut capped: String = chars.by_ref().take(MAX_CAPTION_CHARS).collect();
    let Some(next) = chars.next() else {
        return capped;
    };
    if !next.is_whitespace()
        && let Some(pos) = capped.rfind(char::is_whitespace)
        && pos >= capped.len() * 3 / 4
    {
        capped.truncate(pos);
    }
    capped.truncate(capped.trim_end().len());
    capped.push('…');
    capped
}

/// Upper-cases the caption, caps its length, turns every run of whitespace
/// into one space and drops characters for which `has_glyph` is false
/// (emoji, control characters, scripts the font lacks).
///
/// `str::to_uppercase` applies Unicode's full mapping, so `é` becomes `É`
/// and `ß` becomes `SS`.
fn normalize_caption(text: &str, has_glyph: impl Fn(char) -> bool) -> String {
    let capped = cap_length(text);
    let mut out = String::with_capacity(capped.len());
    let mut pending_space = false;
    for c in capped.to_uppercase().chars() {
        if c.is_whitespace() {
            pending_space = !out.is_empty();
        } else if !c.is_control() && has_glyph(c) {
            if pending_space {
                out.push(' ');
                pending_space = false;
            }
            out.push(c);
        }
    }
    out
}

/// One character of a caption with what layout needs from the font, in
/// unscaled font units.
struct ShapedGlyph {
    is_space: bool,
    id: GlyphId,
    advance: f32,
    /// `None` for glyphs with no ink (spaces).
    outline: Option<Outline>,
}

/// A normalised caption ready for layout.
struct Caption {
    glyphs: Vec<ShapedGlyph>,
    /// `kerning[i]` is the adjustment between glyph `i` and `i + 1`.
    kerning: Vec<f32>,
}

/// Horizontal ink extent and vertical ink extent (y up, relative to the
/// baseline) of a run of glyphs, in unscaled font units.
#[derive(Clone, Copy, Debug)]
struct RunExtent {
    left: f32,
    right: f32,
    top: f32,
    bottom: f32,
}

impl Caption {
    /// Ink extent of `glyphs[range]` laid out on one line starting at pen
    /// position 0, or `None` if the run has no ink.
    fn extent(&self, range: std::ops::Range<usize>) -> Option<RunExtent> {
        let mut pen = 0.0;
        let mut ext: Option<RunExtent> = None;
        for i in range.clone() {
            let g = &self.glyphs[i];
            if let Some(outline) = &g.outline {
                let b = outline.bounds;
                let e = ext.get_or_insert(RunExtent {
                    left: f32::MAX,
                    right: f32::MIN,
                    top: f32::MIN,
                    bottom: f32::MAX,
                });
                e.left = e.left.min(pen + b.min.x);
                e.right = e.right.max(pen + b.max.x);
                // ab_glyph stores outline bounds with `min.y` as the top
                // (largest y, font units grow upwards) and `max.y` as the bottom.
                e.top = e.top.max(b.min.y);
                e.bottom = e.bottom.min(b.max.y);
            }
            pen += g.advance;
            if i + 1 < range.end {
                pen += self.kerning[i];
            }
        }
        ext
    }

    fn ink_width(&self, range: std::ops::Range<usize>) -> f32 {
        self.extent(range).map_or(0.0, |e| e.right - e.left)
    }
}

// ---------------------------------------------------------------------------
// Layout
// ---------------------------------------------------------------------------

/// Font-wide numbers layout needs, read once.
struct FontMetrics {
    units_per_em: f32,
    /// ab_glyph's `PxScale` is the ascent-to-descent height in pixels, not
    /// the em size; this converts one to the other.
    height_per_em: f32,
    /// Height of capital letters (from `H`), in font units.
    cap_height: f32,
}

impl FontMetrics {
    fn new(font: &FontRef<'_>) -> FontMetrics {
        let units_per_em = font.units_per_em().unwrap_or(1000.0);
        let cap_height = font
            .outline(font.glyph_id('H'))
            // `min.y` is the top of the outline (see `Caption::extent`).
            .map_or(units_per_em * 0.714, |o| o.bounds.min.y);
        FontMetrics {
            units_per_em,
            height_per_em: font.height_unscaled() / units_per_em,
            cap_height,
        }
    }

    /// Pixels per font unit at `em` pixels per em.
    fn px_per_unit(&self, em: f32) -> f32 {
        em / self.units_per_em
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Band {
    Top,
    Bottom,
}

/// Where a caption may put ink, in image pixels.
#[derive(Clone, Copy, Debug)]
struct CaptionBox {
    left: f32,
    right: f32,
    top: f32,
    bottom: f32,
    band: Band,
    image_width: u32,
}

impl CaptionBox {
    fn new(width: u32, height: u32, band: Band) -> CaptionBox {
        let (w, h) = (width as f32, height as f32);
        let margin_x = (w * style::MARGIN_X).round();
        let margin_y = (h * style::MARGIN_Y).round();
        let box_h = (h * style::BOX_HEIGHT).round();
        let (top, bottom) = match band {
            Band::Top => (margin_y, margin_y + box_h),
            Band::Bottom => (h - margin_y - box_h, h - margin_y),
        };
        CaptionBox {
            left: margin_x,
            right: w - margin_x,
            top,
            bottom,
            band,
            image_width: width,
        }
    }

    fn width(&self) -> f32 {
        self.right - self.left
    }

    fn height(&self) -> f32 {
        self.bottom - self.top
    }
}

/// A caption laid out at a specific size.
#[derive(Clone, Debug)]
struct Layout {
    em: f32,
    stroke: f32,
    /// Per line: glyph range, pen x of the first glyph and baseline y, in
    /// image pixels.
    lines: Vec<LineLayout>,
}

#[derive(Clone, Debug)]
struct LineLayout {
    range: std::ops::Range<usize>,
    pen_x: f32,
    baseline: f32,
}

fn stroke_for(em: f32) -> f32 {
    (em * style::STROKE_EM).clamp(style::STROKE_MIN, style::STROKE_MAX)
}

/// Breaks the caption into lines no wider than `max_width` font units,
/// greedily, word by word. A word that alone is too wide is split between
/// characters if `split_words`, otherwise the wrap fails (`None`).
/// Returned ranges never start or end with a space.
fn wrap(
    caption: &Caption,
    max_width: f32,
    split_words: bool,
) -> Option<Vec<std::ops::Range<usize>>> {
    let glyphs = &caption.glyphs;
    let mut lines = Vec::new();
    let mut i = 0;
    while i < glyphs.len() {
        // Skip spaces at the start of a line.
        while i < glyphs.len() && glyphs[i].is_space {
            i += 1;
        }
        if i == glyphs.len() {
            break;
        }
        let start = i;
        // Extend word by word while the line still fits.
        let mut end = start;
        let mut j = start;
        loop {
            let word_end = (j..glyphs.len())
                .find(|&k| glyphs[k].is_space)
                .unwrap_or(glyphs.len());
            if caption.ink_width(start..word_end) <= max_width {
                end = word_end;
                j = word_end;
                while j < glyphs.len() && glyphs[j].is_space {
                    j += 1;
                }
                if j == glyphs.len() {
                    break;
                }
            } else {
                break;
            }
        }
        if end == start {
            if !split_words {
                return None;
            }
            // The first word alone is too wide: take as many characters as
            // fit, but always at least one so wrapping makes progress.
            end = start + 1;
            while end < glyphs.len()
                && !glyphs[end].is_space
                && caption.ink_width(start..end + 1) <= max_width
            {
                end += 1;
            }
        }
        lines.push(start..end);
        i = end;
    }
    Some(lines)
}

/// Vertical extent of a block of lines, in pixels relative to the first
/// baseline: `(top, bottom)` with y growing downwards, outline included.
fn block_extent(
    caption: &Caption,
    lines: &[std::ops::Range<usize>],
    m: &FontMetrics,
    em: f32,
) -> (f32, f32) {
    let k = m.px_per_unit(em);
    let step = em * style::LINE_SPACING;
    let stroke = stroke_for(em);
    let last = (lines.len().saturating_sub(1)) as f32 * step;
    // Nominal block: cap height above the first baseline, a little room
    // below the last one; widened wherever real ink (accents, descenders)
    // reaches further.
    let mut top = -m.cap_height * k;
    let mut bottom = last + em * style::DESCENT_EM;
    for (n, range) in lines.iter().enumerate() {
        if let Some(e) = caption.extent(range.clone()) {
            let baseline = n as f32 * step;
            top = top.min(baseline - e.top * k);
            bottom = bottom.max(baseline - e.bottom * k);
        }
    }
    let reach = stroke + 0.5;
    (top - reach, bottom + reach)
}

/// Widest ink a line may have at `em`, in font units. The outline reaches
/// `stroke + 0.5` px beyond the glyphs on both sides (see `disc_offsets`).
fn line_width_units(m: &FontMetrics, area: &CaptionBox, em: f32) -> f32 {
    (area.width() - 2.0 * (stroke_for(em) + 0.5)) / m.px_per_unit(em)
}

/// Tries one em size: wraps, then checks line count (at most
/// `MAX_LINES`) and height.
fn try_size(
    caption: &Caption,
    m: &FontMetrics,
    area: &CaptionBox,
    em: f32,
    split_words: bool,
) -> Option<Vec<std::ops::Range<usize>>> {
    let max_width = line_width_units(m, area, em);
    let lines = wrap(caption, max_width, split_words)?;
    if lines.len() > style::MAX_LINES {
        return None;
    }
    let (top, bottom) = block_extent(caption, &lines, m, em);
    (bottom - top <= area.height()).then_some(lines)
}

/// Chooses the largest em size (whole pixels, so results are stable) at
/// which the caption fits its box in at most `MAX_LINES` lines, and places
/// the lines.
///
/// Sizes that keep every word whole are preferred down to
/// `MIN_EM_WHOLE_WORDS`; only a caption with a word too long for that (a
/// URL, a keyboard mash) gets words split, at the largest size that then
/// fits. If even `MIN_EM` needs more lines, more lines are allowed as long
/// as they fit; lines that still do not fit are dropped (only possible for
/// pathological input, given `MAX_CAPTION_CHARS`).
fn fit_caption(caption: &Caption, m: &FontMetrics, area: &CaptionBox) -> Layout {
    let max_em = (area.image_width as f32 * style::MAX_EM)
        .min(area.height() / style::LINE_SPACING)
        .floor()
        .max(style::MIN_EM);
    let passes = [(style::MIN_EM_WHOLE_WORDS, false), (style::MIN_EM, true)];
    let mut chosen = None;
    'search: for (min_em, split_words) in passes {
        let mut em = max_em;
        while em >= min_em {
            if let Some(lines) = try_size(caption, m, area, em, split_words) {
                chosen = Some((em, lines));
                break 'search;
            }
            em -= 1.0;
        }
    }
    let (em, lines) = chosen.unwrap_or_else(|| {
        let em = style::MIN_EM;
        let mut lines = wrap(caption, line_width_units(m, area, em), true).unwrap_or_default();
        while lines.len() > 1 {
            let (top, bottom) = block_extent(caption, &lines, m, em);
            if bottom - top <= area.height() {
                break;
            }
            lines.pop();
        }
        (em, lines)
    });
    let lines = balance(caption, m, area, em, lines);
    place_lines(caption, m, area, em, lines)
}

/// Re-wraps the caption into the same number of lines, but as narrow as
/// possible, so it does not end with a lone short word ("ON THE FIRST /
/// TRY" becomes "ON THE / FIRST TRY"). Keeps the greedy wrap if no
/// narrower width gives the same line count without splitting a word.
fn balance(
    caption: &Caption,
    m: &FontMetrics,
    area: &CaptionBox,
    em: f32,
    lines: Vec<std::ops::Range<usize>>,
) -> Vec<std::ops::Range<usize>> {
    let n = lines.len();
    let max_width = line_width_units(m, area, em);
    // Never go below the widest word, or words would be split needlessly.
    let widest_word = caption
        .glyphs
        .split(|g| g.is_space)
        .scan(0, |start, word| {
            let range = *start..*start + word.len();
            *start += word.len() + 1;
            Some(caption.ink_width(range))
        })
        .fold(0.0f32, f32::max);
    if n < 2 || widest_word > max_width {
        return lines;
    }
    let (mut lo, mut hi) = (widest_word, max_width);
    // Bisection on the line width; 16 rounds resolve it to well under a
    // pixel, and each round is one cheap wrap.
    for _ in 0..16 {
        let mid = (lo + hi) / 2.0;
        if wrap(caption, mid, false).is_some_and(|l| l.len() <= n) {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    match wrap(caption, hi, false) {
        Some(balanced) if balanced.len() == n => {
            let (top, bottom) = block_extent(caption, &balanced, m, em);
            if bottom - top <= area.height() {
                balanced
            } else {
                lines
            }
        }
        _ => lines,
    }
}

/// Centres each line horizontally on its ink and anchors the block to the
/// top or bottom of the box.
fn place_lines(
    caption: &Caption,
    m: &FontMetrics,
    area: &CaptionBox,
    em: f32,
    ranges: Vec<std::ops::Range<usize>>,
) -> Layout {
    let k = m.px_per_unit(em);
    let step = em * style::LINE_SPACING;
    let (top, bottom) = block_extent(caption, &ranges, m, em);
    let first_baseline = match area.band {
        Band::Top => area.top - top,
        Band::Bottom => area.bottom - bottom,
    };
    let centre = (area.left + area.right) / 2.0;
    let lines = ranges
        .into_iter()
        .enumerate()
        .map(|(n, range)| {
            let (left, right) = caption
                .extent(range.clone())
                .map_or((0.0, 0.0), |e| (e.left, e.right));
            LineLayout {
                pen_x: centre - (left + right) / 2.0 * k,
                baseline: first_baseline + n as f32 * step,
                range,
            }
        })
        .collect();
    Layout {
        em,
        stroke: stroke_for(em),
        lines,
    }
}

// ---------------------------------------------------------------------------
// Drawing
// ---------------------------------------------------------------------------

/// A coverage buffer (0.0..=1.0 per pixel) over a rectangle of the image.
struct Mask {
    x0: i32,
    y0: i32,
    width: usize,
    height: usize,
    data: Vec<f32>,
}

impl Mask {
    fn new(x0: i32, y0: i32, width: usize, height: usize) -> Mask {
        Mask {
            x0,
            y0,
            width,
            height,
            data: vec![0.0; width * height],
        }
    }

    fn get(&self, x: usize, y: usize) -> f32 {
        self.data[y * self.width + x]
    }
}

/// Rasterises every glyph of the layout into a coverage mask covering the
/// caption plus room for the outline, clipped to the image.
fn rasterize(
    caption: &Caption,
    layout: &Layout,
    m: &FontMetrics,
    image_w: u32,
    image_h: u32,
) -> Option<Mask> {
    let k = m.px_per_unit(layout.em);
    let scale = PxScale::from(layout.em * m.height_per_em);
    let factor = PxScaleFactor {
        horizontal: k,
        vertical: k,
    };
    let mut outlined: Vec<OutlinedGlyph> = Vec::new();
    for line in &layout.lines {
        let mut pen = line.pen_x;
        for i in line.range.clone() {
            let g = &caption.glyphs[i];
            if let Some(outline) = &g.outline {
                let glyph =
                    g.id.with_scale_and_position(scale, point(pen, line.baseline));
                outlined.push(OutlinedGlyph::new(glyph, outline.clone(), factor));
            }
            pen += g.advance * k;
            if i + 1 < line.range.end {
                pen += caption.kerning[i] * k;
            }
        }
    }
    // Bounding box of all glyphs, grown by the outline reach, clipped.
    let reach = (layout.stroke + 1.0).ceil() as i32;
    let (mut x0, mut y0, mut x1, mut y1) = (i32::MAX, i32::MAX, i32::MIN, i32::MIN);
    for og in &outlined {
        let b = og.px_bounds();
        x0 = x0.min(b.min.x as i32);
        y0 = y0.min(b.min.y as i32);
        x1 = x1.max(b.max.x as i32);
        y1 = y1.max(b.max.y as i32);
    }
    if x0 > x1 {
        return None;
    }
    let x0 = (x0 - reach).max(0);
    let y0 = (y0 - reach).max(0);
    let x1 = (x1 + reach).min(image_w as i32);
    let y1 = (y1 + reach).min(image_h as i32);
    if x1 <= x0 || y1 <= y0 {
        return None;
    }
    let mut mask = Mask::new(x0, y0, (x1 - x0) as usize, (y1 - y0) as usize);
    for og in &outlined {
        let b = og.px_bounds();
        let (gx, gy) = (b.min.x as i32 - x0, b.min.y as i32 - y0);
        og.draw(|x, y, c| {
            let (px, py) = (gx + x as i32, gy + y as i32);
            if px >= 0 && py >= 0 && (px as usize) < mask.width && (py as usize) < mask.height {
                let v = &mut mask.data[py as usize * mask.width + px as usize];
                // Overlapping glyphs (tight pairs) add up, capped at full.
                *v = (*v + c).min(1.0);
            }
        });
    }
    Some(mask)
}

/// Offsets of a disc of radius `r` with anti-aliased weights: 1 inside,
/// falling to 0 over the last pixel, so the outline edge is smooth.
fn disc_offsets(r: f32) -> Vec<(i32, i32, f32)> {
    let reach = (r + 0.5).ceil() as i32;
    let mut out = Vec::new();
    for dy in -reach..=reach {
        for dx in -reach..=reach {
            let d = ((dx * dx + dy * dy) as f32).sqrt();
            let w = (r + 0.5 - d).clamp(0.0, 1.0);
            if w > 0.0 {
                out.push((dx, dy, w));
            }
        }
    }
    out
}

/// The outline: grey-scale dilation of the glyph coverage by a disc, i.e.
/// each pixel takes the strongest coverage within `radius`. This is a real
/// stroke of even width all around, not a few offset copies.
fn dilate(mask: &Mask, radius: f32) -> Vec<f32> {
    let (w, h) = (mask.width, mask.height);
    let mut out = vec![0.0f32; w * h];
    let disc = disc_offsets(radius);
    for y in 0..h {
        for x in 0..w {
            let c = mask.get(x, y);
            if c <= 0.0 {
                continue;
            }
            // A pixel whose four neighbours are at least as covered adds
            // nothing their discs do not already cover; skipping the glyph
            // interiors makes this proportional to the glyph perimeter.
            let covered = |nx: usize, ny: usize| mask.get(nx, ny) >= c;
            if x > 0
                && y > 0
                && x + 1 < w
                && y + 1 < h
                && covered(x - 1, y)
                && covered(x + 1, y)
                && covered(x, y - 1)
                && covered(x, y + 1)
            {
                continue;
            }
            for &(dx, dy, weight) in &disc {
                let (nx, ny) = (x as i32 + dx, y as i32 + dy);
                if nx < 0 || ny < 0 || nx as usize >= w || ny as usize >= h {
                    continue;
                }
                let v = &mut out[ny as usize * w + nx as usize];
                *v = v.max(c * weight);
            }
        }
    }
    out
}

/// Draws the caption: black outline first, white fill over it.
fn draw_caption(canvas: &mut RgbImage, caption: &Caption, layout: &Layout, m: &FontMetrics) {
    let (iw, ih) = canvas.dimensions();
    let Some(fill) = rasterize(caption, layout, m, iw, ih) else {
        return;
    };
    let outline = dilate(&fill, layout.stroke);
    for y in 0..fill.height {
        for x in 0..fill.width {
            let idx = y * fill.width + x;
            let (a_out, a_fill) = (outline[idx], fill.data[idx]);
            if a_out <= 0.0 {
                continue;
            }
            let px = canvas.get_pixel_mut(fill.x0 as u32 + x as u32, fill.y0 as u32 + y as u32);
            for ch in px.0.iter_mut() {
                // Composite over black (the outline), then white (the fill).
                let v = *ch as f32 * (1.0 - a_out);
                let v = v * (1.0 - a_fill) + 255.0 * a_fill;
                *ch = (v + 0.5) as u8;
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Encoding
// ---------------------------------------------------------------------------

/// Encodes with fixed settings: the same image always gives the same bytes
/// (for a given `image`/`png` version). Deflate level 3 with adaptive
/// filtering: about 40% smaller than `Fast` for 3-8 ms on a 600x400 meme,
/// whereas `Default`/`Best` cost up to 30/120 ms for a few percent more.
fn encode_png(image: &RgbImage) -> Result<Vec<u8>, RenderError> {
    let mut png = Vec::with_capacity(image.as_raw().len() / 3);
    PngEncoder::new_with_quality(&mut png, CompressionType::Level(3), FilterType::Adaptive)
        .write_image(
            image.as_raw(),
            image.width(),
            image.height(),
            image::ExtendedColorType::Rgb8,
        )
        .map_err(RenderError::Encode)?;
    Ok(png)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::OnceLock;

    fn renderer() -> &'static Renderer {
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
    fn every_manifest_template_is_embedded_and_decodes() {
        let manifest: Manifest = serde_json::from_str(MANIFEST_JSON).unwrap();
        assert_eq!(manifest.version, 1);
        assert!(manifest.templates.len() >= 8);
        for entry in &manifest.templates {
            let (_, bytes) = EMBEDDED_FILES
                .iter()
                .find(|(name, _)| *name == entry.file)
                .unwrap_or_else(|| panic!("{} not embedded", entry.file));
            let img = image::load_from_memory(bytes).unwrap();
            assert_eq!(
                (img.width(), img.height()),
                (entry.width, entry.height),
                "{}",
                entry.id
            );
            assert!(!entry.tags.is_empty(), "{} has no tags", entry.id);
            assert_eq!(entry.file, format!("{}.png", entry.id));
        }
        for (name, _) in EMBEDDED_FILES {
            assert!(
                manifest.templates.iter().any(|e| e.file == *name),
                "{name} embedded but not in templates.json"
            );
        }
        assert_eq!(renderer().templates().len(), manifest.templates.len());
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
    fn short_captions_get_big_text_and_long_ones_shrink() {
        let r = renderer();
        let area = CaptionBox::new(600, 400, Band::Top);
        let short = r.shape("wow");
        let long = r.shape(&"much text very caption ".repeat(6));
        let a = fit_caption(&short, &r.metrics, &area);
        let b = fit_caption(&long, &r.metrics, &area);
        assert_eq!(a.lines.len(), 1);
        assert!(a.em >= 60.0, "short caption em {}", a.em);
        assert!(b.em < a.em && b.lines.len() > 1 && b.lines.len() <= style::MAX_LINES);
    }

    #[test]
    fn lines_are_balanced() {
        let r = renderer();
        let area = CaptionBox::new(600, 600, Band::Bottom);
        let caption = r.shape("on the first try");
        let layout = fit_caption(&caption, &r.metrics, &area);
        assert_eq!(layout.lines.len(), 2);
        let widths: Vec<f32> = layout
            .lines
            .iter()
            .map(|l| caption.ink_width(l.range.clone()))
            .collect();
        assert!(widths[1] > widths[0] * 0.6, "unbalanced: {widths:?}");
        // A word that fits on a line is never split by balancing.
        let caption = r.shape("incomprehensibilities x");
        let layout = fit_caption(&caption, &r.metrics, &area);
        assert!(layout.lines.iter().all(|l| l.range != (0..5)));
        assert_eq!(layout.lines[0].range, 0..21, "{:?}", layout.lines);
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
    fn words_too_wide_for_a_line_are_broken() {
        let r = renderer();
        let area = CaptionBox::new(600, 400, Band::Bottom);
        let caption = r.shape(&"X".repeat(120));
        let layout = fit_caption(&caption, &r.metrics, &area);
        assert!(layout.lines.len() > 1);
        let total: usize = layout.lines.iter().map(|l| l.range.len()).sum();
        assert_eq!(total, 120, "no character lost");
    }

    #[test]
    fn captions_are_upper_cased_and_cleaned() {
        let all = |_: char| true;
        assert_eq!(normalize_caption("crème brûlée", all), "CRÈME BRÛLÉE");
        assert_eq!(normalize_caption("über straße", all), "ÜBER STRASSE");
        assert_eq!(normalize_caption("  señor\n\tniño  ", all), "SEÑOR NIÑO");
        assert_eq!(normalize_caption("", all), "");
        assert_eq!(normalize_caption("a\u{7}b", all), "AB");
        let long = normalize_caption(&"é".repeat(500), all);
        assert_eq!(long.chars().count(), MAX_CAPTION_CHARS + 1);
        assert!(long.starts_with("ÉÉÉ") && long.ends_with('…'));
        // Cut at a word boundary, not mid-word.
        let words = normalize_caption(&"meme ".repeat(100), all);
        assert!(words.ends_with("MEME…"), "{words}");
        let words = normalize_caption(&"memes ".repeat(100), all);
        assert!(words.ends_with("MEMES…"), "{words}");
        let exact = normalize_caption(&"x".repeat(MAX_CAPTION_CHARS), all);
        assert_eq!(exact.chars().count(), MAX_CAPTION_CHARS);
        // With the real font: emoji are dropped, spaces around them collapse.
        let r = renderer();
        let has_glyph = |c: char| r.font.glyph_id(c).0 != 0;
        assert_eq!(normalize_caption("i ❤️ rust 🦀!", has_glyph), "I RUST !");
        assert_eq!(normalize_caption("🎉", has_glyph), "");
        assert_eq!(normalize_caption("Ωмега ñ", has_glyph), "ΩМЕГА Ñ");
        assert!(
            r.render("galaxy", "emoji 🎉🎉🎉 time", "ÇA VA? ÑANDÚ ŽLUŤOUČKÝ")
                .is_ok()
        );
        // Combining marks, right-to-left and CJK text must not panic either.
        let odd = "cafe\u{301} e\u{308} مرحبا 你好 \u{200d}\u{fe0f}";
        assert!(r.render("galaxy", odd, odd).is_ok());
    }

    #[test]
    fn unknown_template_is_an_error() {
        match renderer().render("no-such-template", "a", "b") {
            Err(RenderError::UnknownTemplate(id)) => assert_eq!(id, "no-such-template"),
            other => panic!("expected UnknownTemplate, got {other:?}"),
        }
    }

    #[test]
    fn bad_manifests_are_rejected() {
        let png = EMBEDDED_FILES[0].1;
        let entry = |id: &str, file: &str, w: u32| {
            format!(
                r#"{{"id":"{id}","title":"T","file":"{file}","tags":["x"],"width":{w},"height":600}}"#
            )
        };
        let manifest =
            |entries: &[String]| format!(r#"{{"version":1,"templates":[{}]}}"#, entries.join(","));
        let files: &[(&str, &[u8])] = &[("a.png", png), ("junk.png", b"not a png")];

        let ok = Renderer::from_manifest(&manifest(&[entry("a", "a.png", 600)]), files).unwrap();
        assert_eq!(ok.templates()[0].id, "a");
        let missing = Renderer::from_manifest(&manifest(&[entry("b", "b.png", 600)]), files);
        assert!(matches!(missing, Err(RenderError::InvalidTemplate { .. })));
        let wrong_size = Renderer::from_manifest(&manifest(&[entry("a", "a.png", 601)]), files);
        assert!(matches!(
            wrong_size,
            Err(RenderError::InvalidTemplate { .. })
        ));
        let dup = Renderer::from_manifest(
            &manifest(&[entry("a", "a.png", 600), entry("a", "a.png", 600)]),
            files,
        );
        assert!(matches!(dup, Err(RenderError::InvalidTemplate { .. })));
        let junk = Renderer::from_manifest(&manifest(&[entry("j", "junk.png", 600)]), files);
        assert!(matches!(junk, Err(RenderError::Decode { .. })));
        assert!(matches!(
            Renderer::from_manifest("{", files),
            Err(RenderError::Manifest(_))
        ));
    }
}
