//! The layout stage: from a caption string to lines placed in the image.
//!
//! Normalising the caption (upper case, whitespace, glyphs the font lacks,
//! the length cap), shaping it once with the font, then word-wrapping it,
//! picking the largest size that fits its box, balancing the lines and
//! placing them. All arithmetic on font units and pixels: nothing here
//! touches an image.

use ab_glyph::{Font, FontRef, GlyphId, Outline};

use super::{MAX_CAPTION_CHARS, Renderer};

/// Layout constants, as fractions of the image size unless noted.
pub(super) mod style {
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

impl Renderer {
    /// Normalises `text` and looks up each character's glyph once, so that
    /// trying many font sizes is plain arithmetic.
    pub(super) fn shape(&self, text: &str) -> Caption {
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
pub(super) struct ShapedGlyph {
    is_space: bool,
    pub(super) id: GlyphId,
    pub(super) advance: f32,
    /// `None` for glyphs with no ink (spaces).
    pub(super) outline: Option<Outline>,
}

/// A normalised caption ready for layout.
pub(super) struct Caption {
    pub(super) glyphs: Vec<ShapedGlyph>,
    /// `kerning[i]` is the adjustment between glyph `i` and `i + 1`.
    pub(super) kerning: Vec<f32>,
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

/// Font-wide numbers layout needs, read once.
pub(super) struct FontMetrics {
    units_per_em: f32,
    /// ab_glyph's `PxScale` is the ascent-to-descent height in pixels, not
    /// the em size; this converts one to the other.
    pub(super) height_per_em: f32,
    /// Height of capital letters (from `H`), in font units.
    cap_height: f32,
}

impl FontMetrics {
    pub(super) fn new(font: &FontRef<'_>) -> FontMetrics {
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
    pub(super) fn px_per_unit(&self, em: f32) -> f32 {
        em / self.units_per_em
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Band {
    Top,
    Bottom,
}

/// Where a caption may put ink, in image pixels.
#[derive(Clone, Copy, Debug)]
pub(super) struct CaptionBox {
    left: f32,
    right: f32,
    top: f32,
    bottom: f32,
    band: Band,
    image_width: u32,
}

impl CaptionBox {
    pub(super) fn new(width: u32, height: u32, band: Band) -> CaptionBox {
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
pub(super) struct Layout {
    pub(super) em: f32,
    pub(super) stroke: f32,
    /// Per line: glyph range, pen x of the first glyph and baseline y, in
    /// image pixels.
    pub(super) lines: Vec<LineLayout>,
}

#[derive(Clone, Debug)]
pub(super) struct LineLayout {
    pub(super) range: std::ops::Range<usize>,
    pub(super) pen_x: f32,
    pub(super) baseline: f32,
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
pub(super) fn fit_caption(caption: &Caption, m: &FontMetrics, area: &CaptionBox) -> Layout {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::premium::render::tests::renderer;

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
}
