//! Draws the built-in meme templates and writes them to `data/templates/`.
//!
//! Every template is simple vector-style art produced here from code (shapes,
//! gradients, outlines): no image is copied from anywhere. The output is
//! deterministic: the same source always produces byte-identical PNGs and the
//! same `templates.json`, so regenerating never causes spurious diffs.
//!
//! Run from the crate root: `cargo run --example draw_templates [OUT_DIR]`
//! (default `OUT_DIR` is `<crate>/data/templates`).
//!
//! Note: the premium renderer embeds these files with `include_bytes!`, so the
//! crate only builds while they exist; after adding a template here, also add
//! its file name to the embedded list in `src/premium/render/templates.rs`.

use std::f32::consts::PI;
use std::fmt::Write as _;
use std::path::PathBuf;

use image::codecs::png::{CompressionType, FilterType, PngEncoder};
use image::{ImageEncoder, Rgb, RgbImage};
use imageproc::drawing::{draw_filled_ellipse_mut, draw_filled_rect_mut, draw_polygon_mut};
use imageproc::point::Point;
use imageproc::rect::Rect;

/// Supersampling factor: shapes are drawn at this multiple of the final size
/// and box-filtered down, which gives smooth (anti-aliased) edges even though
/// imageproc's filled primitives are aliased.
const SS: u32 = 3;

/// A colour as floating-point RGB in 0..=255, used for gradients and blending.
type Rgbf = [f32; 3];

fn hex(c: u32) -> Rgb<u8> {
    Rgb([(c >> 16) as u8, (c >> 8) as u8, c as u8])
}

fn hexf(c: u32) -> Rgbf {
    let Rgb([r, g, b]) = hex(c);
    [r as f32, g as f32, b as f32]
}

fn mix(a: Rgbf, b: Rgbf, t: f32) -> Rgbf {
    let t = t.clamp(0.0, 1.0);
    [
        a[0] + (b[0] - a[0]) * t,
        a[1] + (b[1] - a[1]) * t,
        a[2] + (b[2] - a[2]) * t,
    ]
}

/// Piecewise-linear gradient through `(position, colour)` stops sorted by position.
fn gradient(stops: &[(f32, u32)], t: f32) -> Rgbf {
    let first = stops[0];
    if t <= first.0 {
        return hexf(first.1);
    }
    for pair in stops.windows(2) {
        let ((t0, c0), (t1, c1)) = (pair[0], pair[1]);
        if t <= t1 {
            return mix(hexf(c0), hexf(c1), (t - t0) / (t1 - t0));
        }
    }
    hexf(stops[stops.len() - 1].1)
}

/// Small deterministic pseudo-random generator (64-bit LCG) for star fields,
/// flame placement and rain, so output never depends on a system RNG.
struct Lcg(u64);

impl Lcg {
    fn next_f32(&mut self) -> f32 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        ((self.0 >> 40) as f32) / ((1u64 << 24) as f32)
    }

    fn range(&mut self, lo: f32, hi: f32) -> f32 {
        lo + (hi - lo) * self.next_f32()
    }
}

/// An outline: colour and width in pixels.
#[derive(Clone, Copy)]
struct Stroke(u32, f32);

/// Drawing surface in template coordinates (pixels of the final image),
/// backed by a supersampled buffer.
struct Canvas {
    img: RgbImage,
}

impl Canvas {
    fn new(w: u32, h: u32, bg: u32) -> Self {
        Canvas {
            img: RgbImage::from_pixel(w * SS, h * SS, hex(bg)),
        }
    }

    fn s(v: f32) -> f32 {
        v * SS as f32
    }

    fn rect(&mut self, x: f32, y: f32, w: f32, h: f32, c: u32) {
        let (x0, y0) = (Self::s(x).round(), Self::s(y).round());
        let (x1, y1) = (Self::s(x + w).round(), Self::s(y + h).round());
        if x1 > x0 && y1 > y0 {
            let r = Rect::at(x0 as i32, y0 as i32).of_size((x1 - x0) as u32, (y1 - y0) as u32);
            draw_filled_rect_mut(&mut self.img, r, hex(c));
        }
    }

    /// A rectangle with its border drawn inside its edge.
    fn rect_outlined(&mut self, x: f32, y: f32, w: f32, h: f32, fill: u32, stroke: Stroke) {
        let Stroke(sc, sw) = stroke;
        self.rect(x, y, w, h, sc);
        self.rect(x + sw, y + sw, w - 2.0 * sw, h - 2.0 * sw, fill);
    }

    fn poly(&mut self, pts: &[(f32, f32)], c: u32) {
        let mut ps: Vec<Point<i32>> = Vec::with_capacity(pts.len());
        for &(x, y) in pts {
            let p = Point::new(Self::s(x).round() as i32, Self::s(y).round() as i32);
            // imageproc rejects repeated consecutive points (and a closed ring).
            if ps.last() != Some(&p) {
                ps.push(p);
            }
        }
        while ps.len() > 1 && ps.first() == ps.last() {
            ps.pop();
        }
        if ps.len() >= 3 {
            draw_polygon_mut(&mut self.img, &ps, hex(c));
        }
    }

    fn poly_outlined(&mut self, pts: &[(f32, f32)], fill: u32, stroke: Stroke) {
        self.poly(pts, fill);
        let mut ring = pts.to_vec();
        ring.push(pts[0]);
        self.polyline(&ring, stroke.1, stroke.0);
    }

    fn ellipse(&mut self, cx: f32, cy: f32, rx: f32, ry: f32, c: u32) {
        let (rx, ry) = (Self::s(rx).round() as i32, Self::s(ry).round() as i32);
        if rx > 0 && ry > 0 {
            let center = (Self::s(cx).round() as i32, Self::s(cy).round() as i32);
            draw_filled_ellipse_mut(&mut self.img, center, rx, ry, hex(c));
        }
    }

    fn circle(&mut self, cx: f32, cy: f32, r: f32, c: u32) {
        self.ellipse(cx, cy, r, r, c);
    }

    /// An ellipse with its outline centred on its edge.
    fn ellipse_outlined(&mut self, cx: f32, cy: f32, rx: f32, ry: f32, fill: u32, stroke: Stroke) {
        let Stroke(sc, sw) = stroke;
        self.ellipse(cx, cy, rx + sw / 2.0, ry + sw / 2.0, sc);
        self.ellipse(cx, cy, rx - sw / 2.0, ry - sw / 2.0, fill);
    }

    fn circle_outlined(&mut self, cx: f32, cy: f32, r: f32, fill: u32, stroke: Stroke) {
        self.ellipse_outlined(cx, cy, r, r, fill, stroke);
    }

    /// A rotated ellipse (leaves, ears), drawn as a polygon.
    fn ellipse_rot(&mut self, cx: f32, cy: f32, rx: f32, ry: f32, angle: f32, c: u32) {
        let pts = ellipse_points(cx, cy, rx, ry, angle, 48);
        self.poly(&pts, c);
    }

    /// A thick line with round caps.
    fn line(&mut self, a: (f32, f32), b: (f32, f32), width: f32, c: u32) {
        let (dx, dy) = (b.0 - a.0, b.1 - a.1);
        let len = (dx * dx + dy * dy).sqrt();
        let r = width / 2.0;
        if len > 0.0 {
            let (nx, ny) = (-dy / len * r, dx / len * r);
            self.poly(
                &[
                    (a.0 + nx, a.1 + ny),
                    (b.0 + nx, b.1 + ny),
                    (b.0 - nx, b.1 - ny),
                    (a.0 - nx, a.1 - ny),
                ],
                c,
            );
        }
        self.circle(a.0, a.1, r, c);
        self.circle(b.0, b.1, r, c);
    }

    fn polyline(&mut self, pts: &[(f32, f32)], width: f32, c: u32) {
        for pair in pts.windows(2) {
            self.line(pair[0], pair[1], width, c);
        }
    }

    /// A stroked line with a dark outline (cartoon style).
    fn polyline_outlined(&mut self, pts: &[(f32, f32)], width: f32, fill: u32, stroke: Stroke) {
        self.polyline(pts, width + 2.0 * stroke.1, stroke.0);
        self.polyline(pts, width, fill);
    }

    /// Circular arc over `angles` (from, to), in radians in screen
    /// coordinates (0 = right, PI/2 = down).
    fn arc(&mut self, cx: f32, cy: f32, r: f32, angles: (f32, f32), width: f32, c: u32) {
        let pts = arc_points(cx, cy, r, r, angles.0, angles.1, 24);
        self.polyline(&pts, width, c);
    }

    /// Recolours every pixel of a region with `f(x, y, current) -> new`,
    /// where `(x, y)` are template coordinates. Used for gradients and glows.
    fn shade(&mut self, x: f32, y: f32, w: f32, h: f32, f: impl Fn(f32, f32, Rgbf) -> Rgbf) {
        let (iw, ih) = (self.img.width() as f32, self.img.height() as f32);
        let x0 = Self::s(x).round().clamp(0.0, iw) as u32;
        let y0 = Self::s(y).round().clamp(0.0, ih) as u32;
        let x1 = Self::s(x + w).round().clamp(0.0, iw) as u32;
        let y1 = Self::s(y + h).round().clamp(0.0, ih) as u32;
        let inv = 1.0 / SS as f32;
        for py in y0..y1 {
            let ty = (py as f32 + 0.5) * inv;
            for px in x0..x1 {
                let tx = (px as f32 + 0.5) * inv;
                let p = self.img.get_pixel_mut(px, py);
                let cur = [p.0[0] as f32, p.0[1] as f32, p.0[2] as f32];
                let new = f(tx, ty, cur);
                p.0 = new.map(|v| v.round().clamp(0.0, 255.0) as u8);
            }
        }
    }

    fn vgradient(&mut self, x: f32, y: f32, w: f32, h: f32, stops: &[(f32, u32)]) {
        self.shade(x, y, w, h, |_, py, _| gradient(stops, (py - y) / h));
    }

    /// Additive-looking soft glow: blends towards `c` with a Gaussian falloff.
    fn glow(&mut self, cx: f32, cy: f32, radius: f32, c: u32, strength: f32) {
        let col = hexf(c);
        let r = radius * 2.2;
        self.shade(cx - r, cy - r, 2.0 * r, 2.0 * r, |x, y, cur| {
            let d2 = ((x - cx).powi(2) + (y - cy).powi(2)) / (radius * radius);
            mix(cur, col, strength * (-d2).exp())
        });
    }

    /// Box-filters the supersampled buffer down to the final size.
    fn finish(self) -> RgbImage {
        let (w, h) = (self.img.width() / SS, self.img.height() / SS);
        let n = SS * SS;
        RgbImage::from_fn(w, h, |x, y| {
            let mut acc = [0u32; 3];
            for sy in 0..SS {
                for sx in 0..SS {
                    let p = self.img.get_pixel(x * SS + sx, y * SS + sy);
                    for (a, v) in acc.iter_mut().zip(p.0) {
                        *a += v as u32;
                    }
                }
            }
            Rgb(acc.map(|a| ((a + n / 2) / n) as u8))
        })
    }
}

fn ellipse_points(cx: f32, cy: f32, rx: f32, ry: f32, angle: f32, n: usize) -> Vec<(f32, f32)> {
    let (sa, ca) = angle.sin_cos();
    (0..n)
        .map(|i| {
            let t = i as f32 / n as f32 * 2.0 * PI;
            let (x, y) = (rx * t.cos(), ry * t.sin());
            (cx + x * ca - y * sa, cy + x * sa + y * ca)
        })
        .collect()
}

fn arc_points(cx: f32, cy: f32, rx: f32, ry: f32, a0: f32, a1: f32, n: usize) -> Vec<(f32, f32)> {
    (0..=n)
        .map(|i| {
            let a = a0 + (a1 - a0) * i as f32 / n as f32;
            (cx + rx * a.cos(), cy + ry * a.sin())
        })
        .collect()
}

/// Teardrop outline with its round end at `(cx, base_y)` and its tip `h`
/// above, leaning sideways by `lean * h` at the tip. Used for flames and
/// sweat drops.
fn teardrop(cx: f32, base_y: f32, w: f32, h: f32, lean: f32) -> Vec<(f32, f32)> {
    let n = 40;
    (0..n)
        .map(|i| {
            let t = i as f32 / n as f32 * 2.0 * PI;
            let up = (1.0 + t.cos()) / 2.0; // 1 at the tip, 0 at the bottom
            let x = cx + w * t.sin() * (t / 2.0).sin().powf(1.6) + lean * h * up * up;
            let y = base_y - h * up;
            (x, y)
        })
        .collect()
}

// ---------------------------------------------------------------------------
// Templates
// ---------------------------------------------------------------------------

const INK: u32 = 0x20201e;

struct Template {
    id: &'static str,
    title: &'static str,
    /// Space-separated tags: what the template suits.
    tags: &'static str,
    draw: fn() -> RgbImage,
}

const TEMPLATES: &[Template] = &[
    Template {
        id: "two-buttons",
        title: "Two Buttons",
        tags: "choice decision dilemma button sweat choose options either pick hard nervous stress",
        draw: two_buttons,
    },
    Template {
        id: "approve-disapprove",
        title: "Approve / Disapprove",
        tags: "approve disapprove prefer preference better instead rather yes no like dislike reject comparison versus",
        draw: approve_disapprove,
    },
    Template {
        id: "expanding-brain",
        title: "Expanding Brain",
        tags: "brain smart genius enlightened levels escalation idea intelligence thinking evolution galaxy smarter iq",
        draw: expanding_brain,
    },
    Template {
        id: "this-is-fine",
        title: "This Is Fine",
        tags: "fine fire burning flames denial calm chaos disaster coping okay ok everything crisis panic coffee",
        draw: this_is_fine,
    },
    Template {
        id: "sunset-cat",
        title: "Sunset Cat",
        tags: "cat sunset calm peaceful wholesome evening reflection thoughtful lonely chill relax nature pet dream",
        draw: sunset_cat,
    },
    Template {
        id: "pointing-at-sign",
        title: "Pointing at Sign",
        tags: "sign point pointing announcement obvious fact explain look notice reminder truth read psa rule",
        draw: pointing_at_sign,
    },
    Template {
        id: "galaxy",
        title: "Galaxy",
        tags: "space galaxy cosmic universe stars mind blown deep epic infinite existential astronomy night vast",
        draw: galaxy,
    },
    Template {
        id: "office-desk",
        title: "Office Desk",
        tags: "office work job monday boss meeting computer deadline coworker desk email coffee corporate programmer code",
        draw: office_desk,
    },
    Template {
        id: "stonks",
        title: "Stonks",
        tags: "stonks stocks money profit investing chart growth up success finance gains market rich crypto win",
        draw: stonks,
    },
    Template {
        id: "rain-cloud",
        title: "Personal Rain Cloud",
        tags: "sad rain unlucky gloomy bad luck depressed alone cloud misery fail disappointed",
        draw: rain_cloud,
    },
];

/// Two big red buttons on a panel above a sweating, undecided face.
fn two_buttons() -> RgbImage {
    let mut c = Canvas::new(600, 600, 0xdfe7ec);
    c.vgradient(0.0, 0.0, 600.0, 600.0, &[(0.0, 0xe3ebf0), (1.0, 0xaebdc7)]);

    // Control panel, seen slightly from above.
    let top = [(95.0, 110.0), (505.0, 110.0), (565.0, 280.0), (35.0, 280.0)];
    c.poly_outlined(&top, 0x607d8b, Stroke(INK, 6.0));
    let front = [(35.0, 280.0), (565.0, 280.0), (565.0, 306.0), (35.0, 306.0)];
    c.poly_outlined(&front, 0x455a64, Stroke(INK, 6.0));

    for cx in [190.0, 410.0] {
        let cy = 200.0;
        c.ellipse_outlined(cx, cy + 6.0, 84.0, 42.0, 0xb0bec5, Stroke(INK, 6.0));
        // Button cylinder: dark silhouette first, then side and top faces.
        c.ellipse(cx, cy, 61.0, 31.0, INK);
        c.rect(cx - 61.0, cy - 26.0, 122.0, 26.0, INK);
        c.ellipse(cx, cy - 26.0, 61.0, 31.0, INK);
        c.ellipse(cx, cy, 55.0, 25.0, 0xa31515);
        c.rect(cx - 55.0, cy - 26.0, 110.0, 26.0, 0xa31515);
        c.ellipse(cx, cy - 26.0, 55.0, 25.0, 0xe53935);
        c.ellipse(cx - 20.0, cy - 34.0, 18.0, 7.0, 0xff8a80);
    }

    // Shirt and neck.
    c.ellipse_outlined(300.0, 660.0, 200.0, 150.0, 0x1e88e5, Stroke(INK, 6.0));
    c.rect(268.0, 470.0, 64.0, 50.0, 0xe0ac69);
    c.line((268.0, 470.0), (268.0, 512.0), 6.0, INK);
    c.line((332.0, 470.0), (332.0, 512.0), 6.0, INK);

    // Head.
    let (hx, hy) = (300.0, 410.0);
    c.circle_outlined(hx, hy, 84.0, 0xf1c27d, Stroke(INK, 6.0));
    // Hair: a cap over the top of the head with a ragged fringe.
    let mut hair = arc_points(hx, hy, 88.0, 88.0, PI * 1.08, PI * 1.92, 24);
    for (i, x) in [372.0, 350.0, 330.0, 305.0, 285.0, 262.0, 240.0, 226.0]
        .iter()
        .enumerate()
    {
        let y = if i % 2 == 0 { 372.0 } else { 352.0 };
        hair.push((*x, y));
    }
    c.poly(&hair, 0x4e342e);
    // Worried eyes looking at the buttons, brows raised in the middle.
    for (ex, dir) in [(266.0, -1.0), (334.0, 1.0)] {
        c.ellipse_outlined(ex, 408.0, 17.0, 20.0, 0xffffff, Stroke(INK, 4.0));
        c.circle(ex - 4.0, 400.0, 7.0, INK);
        c.line((ex + dir * 22.0, 380.0), (ex - dir * 14.0, 366.0), 6.0, INK);
    }
    // Grimace.
    let mouth: Vec<(f32, f32)> = (0..7)
        .map(|i| {
            (
                268.0 + i as f32 * 11.0,
                if i % 2 == 0 { 458.0 } else { 450.0 },
            )
        })
        .collect();
    c.polyline(&mouth, 5.0, INK);
    // Sweat drops.
    for (x, y, s) in [
        (208.0, 372.0, 1.0),
        (392.0, 352.0, 1.2),
        (222.0, 452.0, 0.8),
        (386.0, 440.0, 0.9),
    ] {
        let drop = teardrop(x, y, 11.0 * s, 34.0 * s, 0.0);
        c.poly_outlined(&drop, 0x81d4fa, Stroke(0x0277bd, 3.0));
        c.ellipse(x - 3.0 * s, y - 8.0 * s, 3.0 * s, 5.0 * s, 0xffffff);
    }
    c.finish()
}

/// A figure refusing something (top panel) and approving something (bottom).
fn approve_disapprove() -> RgbImage {
    let mut c = Canvas::new(600, 600, 0xffffff);
    let skin = 0xc68642;
    let jacket = 0xf57c00;

    // Top panel: refusing.
    c.vgradient(0.0, 0.0, 600.0, 300.0, &[(0.0, 0xffd6a5), (1.0, 0xffb67a)]);
    c.ellipse_outlined(150.0, 330.0, 120.0, 95.0, jacket, Stroke(INK, 6.0));
    c.circle_outlined(150.0, 190.0, 64.0, skin, Stroke(INK, 6.0));
    c.poly(
        &arc_points(150.0, 190.0, 67.0, 67.0, PI * 1.05, PI * 1.95, 20),
        0x2b1d14,
    );
    // Eyes squeezed shut, frown, face turned away.
    c.arc(122.0, 190.0, 10.0, (PI * 0.1, PI * 0.9), 5.0, INK);
    c.arc(162.0, 190.0, 10.0, (PI * 0.1, PI * 0.9), 5.0, INK);
    c.arc(140.0, 238.0, 18.0, (PI * 1.15, PI * 1.85), 5.0, INK);
    // Raised palm pushing it away.
    c.polyline_outlined(
        &[(215.0, 320.0), (245.0, 230.0)],
        34.0,
        jacket,
        Stroke(INK, 5.0),
    );
    palm(&mut c, 250.0, 185.0, skin);
    // Red cross.
    for (a, b) in [
        ((400.0, 95.0), (520.0, 215.0)),
        ((520.0, 95.0), (400.0, 215.0)),
    ] {
        c.line(a, b, 44.0, INK);
    }
    for (a, b) in [
        ((400.0, 95.0), (520.0, 215.0)),
        ((520.0, 95.0), (400.0, 215.0)),
    ] {
        c.line(a, b, 32.0, 0xe53935);
    }

    // Bottom panel: approving.
    c.vgradient(
        0.0,
        300.0,
        600.0,
        300.0,
        &[(0.0, 0xfff3b0), (1.0, 0xffe07a)],
    );
    c.ellipse_outlined(150.0, 640.0, 120.0, 95.0, jacket, Stroke(INK, 6.0));
    c.circle_outlined(150.0, 400.0, 64.0, skin, Stroke(INK, 6.0));
    c.poly(
        &arc_points(150.0, 400.0, 67.0, 67.0, PI * 1.05, PI * 1.95, 20),
        0x2b1d14,
    );
    // Happy eyes and a wide smile, looking towards the check mark.
    c.arc(150.0, 398.0, 9.0, (PI * 1.1, PI * 1.9), 5.0, INK);
    c.arc(186.0, 398.0, 9.0, (PI * 1.1, PI * 1.9), 5.0, INK);
    c.poly(&arc_points(172.0, 420.0, 26.0, 22.0, 0.0, PI, 16), INK);
    c.poly(
        &arc_points(172.0, 423.0, 20.0, 14.0, 0.1, PI - 0.1, 16),
        0xffffff,
    );
    // Arm and hand pointing at the right-hand side.
    c.polyline_outlined(
        &[(215.0, 560.0), (265.0, 470.0)],
        34.0,
        jacket,
        Stroke(INK, 5.0),
    );
    c.ellipse_outlined(272.0, 455.0, 22.0, 20.0, skin, Stroke(INK, 5.0));
    c.polyline_outlined(
        &[(285.0, 448.0), (322.0, 436.0)],
        11.0,
        skin,
        Stroke(INK, 4.0),
    );
    // Green check mark.
    let check = [(395.0, 405.0), (440.0, 455.0), (525.0, 355.0)];
    c.polyline(&check, 46.0, INK);
    c.polyline(&check, 34.0, 0x43a047);

    // Panel divider.
    c.rect(0.0, 296.0, 600.0, 8.0, INK);
    c.finish()
}

/// An open palm facing the viewer, centred at `(x, y)`.
fn palm(c: &mut Canvas, x: f32, y: f32, skin: u32) {
    // Fingers first so the palm outline covers their roots.
    for (i, dx) in [-18.0f32, -6.0, 6.0, 18.0].iter().enumerate() {
        let len = [34.0, 42.0, 40.0, 30.0][i];
        c.polyline_outlined(
            &[(x + dx, y), (x + dx * 1.15, y - len)],
            11.0,
            skin,
            Stroke(INK, 4.0),
        );
    }
    c.polyline_outlined(
        &[(x - 22.0, y + 18.0), (x - 42.0, y - 2.0)],
        12.0,
        skin,
        Stroke(INK, 4.0),
    );
    c.ellipse_outlined(x, y + 16.0, 26.0, 28.0, skin, Stroke(INK, 5.0));
    for dx in [-18.0f32, -6.0, 6.0, 18.0] {
        c.circle(x + dx, y - 2.0, 5.5, skin);
    }
}

/// Four rows: a head in profile whose brain grows and glows more each row.
fn expanding_brain() -> RgbImage {
    let mut c = Canvas::new(600, 600, 0xffffff);
    let rows: [(u32, u32, u32, f32); 4] = [
        // (top colour, bottom colour, head colour, brain scale)
        (0xe6e6e6, 0xcfcfcf, 0x8a8f96, 0.45),
        (0xcfe3f5, 0x9ec5ea, 0x5b7da3, 0.75),
        (0x2a2f8f, 0x121547, 0x3949ab, 1.0),
        (0x1a0933, 0x05010d, 0x7e57c2, 1.15),
    ];
    for (i, &(top, bottom, head, scale)) in rows.iter().enumerate() {
        let y0 = i as f32 * 150.0;
        c.vgradient(0.0, y0, 600.0, 150.0, &[(0.0, top), (1.0, bottom)]);
        let (hx, hy) = (290.0, y0 + 78.0);
        if i == 3 {
            // Light rays bursting out of the head, clipped to this row.
            let (rx, ry) = (hx - 4.0, hy - 22.0);
            c.shade(0.0, y0, 600.0, 150.0, |x, y, cur| {
                let a = (y - ry).atan2(x - rx) + PI;
                let sector = (a / (2.0 * PI) * 28.0) as u32;
                let ray = if sector.is_multiple_of(2) {
                    hexf(0x5b2d91)
                } else {
                    cur
                };
                let d = ((x - rx).powi(2) + (y - ry).powi(2)).sqrt();
                mix(ray, cur, d / 420.0)
            });
        }
        if i >= 2 {
            let glow = if i == 2 { 0x4fc3f7 } else { 0xfff59d };
            c.glow(
                hx - 4.0,
                hy - 22.0,
                42.0 + 18.0 * (i as f32 - 2.0),
                glow,
                0.85,
            );
        }
        head_profile(&mut c, hx, hy, head);
        brain(&mut c, hx - 4.0, hy - 22.0, scale, i);
    }
    // Row dividers.
    for i in 1..4 {
        c.rect(0.0, i as f32 * 150.0 - 3.0, 600.0, 6.0, INK);
    }
    c.finish()
}

/// Head in profile facing right, centred around `(x, y)`, about 130 px tall.
fn head_profile(c: &mut Canvas, x: f32, y: f32, col: u32) {
    c.circle(x - 8.0, y - 20.0, 50.0, col);
    let face = [
        (x + 10.0, y - 66.0),
        (x + 34.0, y - 50.0),
        (x + 44.0, y - 26.0),
        (x + 46.0, y - 12.0),
        (x + 60.0, y + 4.0),
        (x + 48.0, y + 10.0),
        (x + 50.0, y + 20.0),
        (x + 45.0, y + 26.0),
        (x + 47.0, y + 36.0),
        (x + 36.0, y + 44.0),
        (x + 18.0, y + 46.0),
        (x + 14.0, y + 72.0),
        (x - 34.0, y + 72.0),
        (x - 30.0, y + 36.0),
        (x - 52.0, y + 8.0),
        (x - 50.0, y - 30.0),
    ];
    c.poly(&face, col);
}

/// A brain seen from the side: a bumpy silhouette with folds. `level`
/// picks the colours (dull pink up to white-hot).
fn brain(c: &mut Canvas, x: f32, y: f32, scale: f32, level: usize) {
    let (fill, fold) = match level {
        0 => (0xd7a3b5, 0x8c5468),
        1 => (0xf48fb1, 0xad1457),
        2 => (0xb3e5fc, 0x0277bd),
        _ => (0xfffde7, 0xff8f00),
    };
    let (rx, ry) = (40.0 * scale, 27.0 * scale);
    let lobes: Vec<(f32, f32)> = (0..11)
        .map(|k| {
            let a = k as f32 / 11.0 * 2.0 * PI;
            (x + rx * 0.74 * a.cos(), y + ry * 0.62 * a.sin())
        })
        .collect();
    let lr = ry * 0.46;
    let sw = (2.5 * scale).max(1.5);
    for &(lx, ly) in &lobes {
        c.circle(lx, ly, lr + sw, fold);
    }
    for &(lx, ly) in &lobes {
        c.circle(lx, ly, lr, fill);
    }
    c.ellipse(x, y, rx * 0.8, ry * 0.68, fill);
    // Folds: short curved strokes, plus the long fissure along the side.
    let fissure = arc_points(
        x + rx * 0.1,
        y + ry * 1.1,
        rx * 0.75,
        ry * 0.9,
        PI * 1.15,
        PI * 1.7,
        12,
    );
    c.polyline(&fissure, sw, fold);
    for &(fx, fy, a) in &[
        (-0.45f32, -0.35f32, 0.3f32),
        (0.0, -0.5, 1.2),
        (0.45, -0.3, 2.2),
        (-0.55, 0.25, 4.0),
        (-0.1, 0.45, 3.3),
        (0.5, 0.35, 5.2),
    ] {
        let pts = arc_points(
            x + fx * rx,
            y + fy * ry,
            ry * 0.22,
            ry * 0.22,
            a,
            a + PI * 1.1,
            8,
        );
        c.polyline(&pts, sw, fold);
    }
}

/// A cartoon dog in a hat, sipping coffee in a burning room.
fn this_is_fine() -> RgbImage {
    let mut c = Canvas::new(600, 400, 0xf2b84b);
    let mut rng = Lcg(0xf1e);
    // Wall, wainscot and floor.
    c.vgradient(0.0, 0.0, 600.0, 300.0, &[(0.0, 0xe8a33d), (1.0, 0xf6c45a)]);
    c.rect(0.0, 250.0, 600.0, 50.0, 0xc98a2e);
    c.rect(0.0, 250.0, 600.0, 5.0, 0x9c6420);
    c.rect(0.0, 300.0, 600.0, 100.0, 0x8d5a2b);
    for y in [320.0, 345.0, 372.0] {
        c.rect(0.0, y, 600.0, 3.0, 0x6f4420);
    }
    // Picture on the wall.
    c.rect_outlined(70.0, 110.0, 110.0, 80.0, 0x9fd3e6, Stroke(0x5d3a1a, 8.0));
    c.poly(
        &[
            (78.0, 182.0),
            (110.0, 150.0),
            (140.0, 170.0),
            (172.0, 140.0),
            (172.0, 182.0),
        ],
        0x66a35a,
    );

    // Smoke along the ceiling.
    c.rect(0.0, 0.0, 600.0, 40.0, 0x4f4545);
    for i in 0..16 {
        let x = i as f32 * 40.0 + rng.range(-8.0, 8.0);
        c.circle(
            x,
            40.0 + rng.range(-6.0, 6.0),
            rng.range(22.0, 32.0),
            0x4f4545,
        );
    }
    for i in 0..12 {
        let x = i as f32 * 52.0 + rng.range(0.0, 20.0);
        c.circle(
            x,
            22.0 + rng.range(-6.0, 6.0),
            rng.range(14.0, 22.0),
            0x625757,
        );
    }

    // Dog at the table.
    let (dx, dy) = (420.0, 175.0);
    let fur = 0xe8b25a;
    c.ellipse_outlined(dx, dy + 90.0, 48.0, 60.0, fur, Stroke(INK, 5.0));
    c.ellipse_rot(dx - 40.0, dy + 8.0, 14.0, 34.0, 0.35, INK);
    c.ellipse_rot(dx + 40.0, dy + 8.0, 14.0, 34.0, -0.35, INK);
    c.circle_outlined(dx, dy, 46.0, fur, Stroke(INK, 5.0));
    c.ellipse_rot(dx - 40.0, dy + 8.0, 10.0, 30.0, 0.35, 0xa8691f);
    c.ellipse_rot(dx + 40.0, dy + 8.0, 10.0, 30.0, -0.35, 0xa8691f);
    c.ellipse_outlined(dx + 8.0, dy + 22.0, 24.0, 16.0, 0xf7d9a0, Stroke(INK, 4.0));
    c.ellipse(dx + 14.0, dy + 12.0, 8.0, 6.0, INK);
    c.arc(dx + 2.0, dy + 26.0, 12.0, (PI * 0.15, PI * 0.85), 3.5, INK);
    for ex in [dx - 16.0, dx + 16.0] {
        c.circle_outlined(ex, dy - 6.0, 9.0, 0xffffff, Stroke(INK, 3.0));
        c.circle(ex + 2.0, dy - 5.0, 4.0, INK);
    }
    // Bowler hat.
    c.ellipse_outlined(dx, dy - 40.0, 56.0, 10.0, 0x5d4037, Stroke(INK, 4.0));
    c.poly_outlined(
        &arc_points(dx, dy - 42.0, 34.0, 34.0, PI, 2.0 * PI, 20),
        0x5d4037,
        Stroke(INK, 4.0),
    );
    c.rect(dx - 33.0, dy - 50.0, 66.0, 7.0, 0x3e2723);

    // Table with a mug held by a paw.
    c.rect_outlined(300.0, 262.0, 270.0, 14.0, 0x7b4a1e, Stroke(INK, 3.0));
    c.rect_outlined(320.0, 274.0, 14.0, 70.0, 0x6a3f17, Stroke(INK, 3.0));
    c.rect_outlined(536.0, 274.0, 14.0, 70.0, 0x6a3f17, Stroke(INK, 3.0));
    c.rect_outlined(352.0, 222.0, 30.0, 40.0, 0xffffff, Stroke(INK, 4.0));
    c.arc(352.0, 242.0, 11.0, (PI * 0.5, PI * 1.5), 5.0, INK);
    c.circle_outlined(386.0, 240.0, 12.0, fur, Stroke(INK, 4.0));
    for (i, x) in [360.0, 372.0].iter().enumerate() {
        let steam: Vec<(f32, f32)> = (0..6)
            .map(|j| {
                (
                    x + ((j + i) as f32 * 1.8).sin() * 4.0,
                    214.0 - j as f32 * 6.0,
                )
            })
            .collect();
        c.polyline(&steam, 2.5, 0xfff2d6);
    }

    // Flames: a back row of tall red ones, then orange, then yellow cores.
    let mut flames = Vec::new();
    for i in 0..14 {
        let x = i as f32 * 45.0 + rng.range(-10.0, 10.0);
        // Taller on the left where the fire started.
        let h = rng.range(70.0, 130.0) + (1.0 - x / 600.0) * 90.0;
        flames.push((x, h, rng.range(-0.25, 0.25)));
    }
    // A tall column of fire climbing the left wall.
    flames.push((18.0, 250.0, 0.12));
    flames.push((60.0, 190.0, -0.1));
    for &(x, h, lean) in &flames {
        c.poly(&teardrop(x, 402.0, h * 0.42, h, lean), 0xd32f2f);
    }
    for &(x, h, lean) in &flames {
        c.poly(&teardrop(x, 402.0, h * 0.3, h * 0.72, lean), 0xfb8c00);
    }
    for &(x, h, lean) in &flames {
        c.poly(&teardrop(x, 402.0, h * 0.17, h * 0.42, lean), 0xffd54f);
    }
    c.finish()
}

/// A cat silhouette on a hill, watching the sun go down.
fn sunset_cat() -> RgbImage {
    let mut c = Canvas::new(600, 400, 0x2b1055);
    let (sx, sy) = (400.0, 292.0);
    let sky = [
        (0.0, 0x241047),
        (0.35, 0x6b2a78),
        (0.62, 0xd9485f),
        (0.78, 0xf7934c),
        (1.0, 0xfcc96a),
    ];
    c.shade(0.0, 0.0, 600.0, 400.0, |x, y, _| {
        let base = gradient(&sky, y / 330.0);
        let d2 = ((x - sx).powi(2) + (y - sy).powi(2)) / (170.0f32 * 170.0);
        mix(base, hexf(0xffd27a), 0.55 * (-d2).exp())
    });
    // Stars in the dark upper sky.
    let mut rng = Lcg(7);
    for _ in 0..40 {
        let (x, y) = (rng.range(0.0, 600.0), rng.range(0.0, 110.0));
        c.circle(x, y, rng.range(0.6, 1.4), 0xf3e5f5);
    }
    // Sun with retro stripes in its lower half.
    c.circle(sx, sy, 84.0, 0xffe9a8);
    c.shade(sx - 84.0, sy - 84.0, 168.0, 168.0, |x, y, cur| {
        let d2 = (x - sx).powi(2) + (y - sy).powi(2);
        if d2 <= 84.0 * 84.0 {
            mix(hexf(0xfff3c4), hexf(0xffa94d), (y - (sy - 84.0)) / 168.0)
        } else {
            cur
        }
    });
    for k in 0..5 {
        let y = sy - 48.0 + k as f32 * 12.0;
        c.shade(sx - 90.0, y, 180.0, 3.0 + k as f32 * 1.5, |x, py, cur| {
            if (x - sx).powi(2) + (py - sy).powi(2) <= 86.0 * 86.0 {
                mix(gradient(&sky, py / 330.0), hexf(0xffd27a), 0.5)
            } else {
                cur
            }
        });
    }
    // Thin clouds.
    for (x, y, w) in [
        (110.0, 150.0, 90.0),
        (170.0, 165.0, 60.0),
        (500.0, 120.0, 70.0),
    ] {
        c.line((x - w / 2.0, y), (x + w / 2.0, y), 7.0, 0xe07a9a);
    }
    // Hill.
    let hill = 0x1b0d2e;
    let mut pts: Vec<(f32, f32)> = (0..=60)
        .map(|i| {
            let x = i as f32 * 10.0;
            (
                x,
                318.0 - 38.0 * (-((x - 190.0) / 170.0).powi(2)).exp() + 10.0 * (x / 90.0).sin(),
            )
        })
        .collect();
    pts.push((600.0, 400.0));
    pts.push((0.0, 400.0));
    c.poly(&pts, hill);
    // Cat, sitting with its back to us.
    let (cx, base) = (190.0, 284.0);
    c.ellipse(cx, base - 4.0, 40.0, 22.0, hill);
    c.ellipse(cx, base - 36.0, 30.0, 40.0, hill);
    c.circle(cx, base - 86.0, 23.0, hill);
    c.poly(
        &[
            (cx - 22.0, base - 92.0),
            (cx - 20.0, base - 122.0),
            (cx - 4.0, base - 104.0),
        ],
        hill,
    );
    c.poly(
        &[
            (cx + 22.0, base - 92.0),
            (cx + 20.0, base - 122.0),
            (cx + 4.0, base - 104.0),
        ],
        hill,
    );
    let tail: Vec<(f32, f32)> = (0..=12)
        .map(|i| {
            let t = i as f32 / 12.0;
            (
                cx + 32.0 + t * 40.0,
                base + 10.0 - (t * PI * 0.5).sin() * 4.0 - t.powi(3) * 34.0,
            )
        })
        .collect();
    c.polyline(&tail, 9.0, hill);
    // Birds.
    for (x, y, s) in [
        (470.0, 150.0, 1.0),
        (505.0, 132.0, 0.8),
        (440.0, 118.0, 0.7),
    ] {
        let wing = [
            (x - 12.0 * s, y - 6.0 * s),
            (x, y),
            (x + 12.0 * s, y - 6.0 * s),
        ];
        c.polyline(&wing, 2.5, 0x2a1238);
    }
    c.finish()
}

/// A stick figure in a park pointing at a blank sign.
fn pointing_at_sign() -> RgbImage {
    let mut c = Canvas::new(600, 400, 0x87ceeb);
    c.vgradient(0.0, 0.0, 600.0, 320.0, &[(0.0, 0x6ec1ea), (1.0, 0xd6f0ff)]);
    c.circle(540.0, 62.0, 34.0, 0xffe066);
    for (x, y, s) in [(110.0, 70.0, 1.0), (350.0, 48.0, 0.8)] {
        c.ellipse(x, y, 46.0 * s, 18.0 * s, 0xffffff);
        c.circle(x - 18.0 * s, y - 10.0 * s, 20.0 * s, 0xffffff);
        c.circle(x + 14.0 * s, y - 14.0 * s, 24.0 * s, 0xffffff);
    }
    // Ground.
    let mut ground: Vec<(f32, f32)> = (0..=30)
        .map(|i| {
            let x = i as f32 * 20.0;
            (x, 318.0 + 6.0 * (x / 70.0).sin())
        })
        .collect();
    ground.push((600.0, 400.0));
    ground.push((0.0, 400.0));
    c.poly(&ground, 0x7cb342);
    c.rect(0.0, 350.0, 600.0, 50.0, 0x689f38);

    // Sign.
    c.rect_outlined(425.0, 200.0, 22.0, 132.0, 0x8d6e63, Stroke(INK, 4.0));
    c.rect_outlined(300.0, 112.0, 270.0, 128.0, 0x6d4c41, Stroke(INK, 4.0));
    c.rect(312.0, 124.0, 246.0, 104.0, 0xfff8e1);
    for (x, y) in [
        (318.0, 130.0),
        (552.0, 130.0),
        (318.0, 222.0),
        (552.0, 222.0),
    ] {
        c.circle(x, y, 3.0, 0x8d6e63);
    }

    // Stick figure.
    let (fx, fy) = (170.0, 178.0);
    c.line((fx, fy + 26.0), (fx, fy + 100.0), 7.0, INK);
    c.line((fx, fy + 100.0), (fx - 30.0, fy + 152.0), 7.0, INK);
    c.line((fx, fy + 100.0), (fx + 30.0, fy + 152.0), 7.0, INK);
    c.line((fx, fy + 44.0), (fx - 30.0, fy + 86.0), 7.0, INK);
    c.polyline(
        &[
            (fx, fy + 44.0),
            (fx + 56.0, fy + 14.0),
            (fx + 100.0, fy - 2.0),
        ],
        7.0,
        INK,
    );
    c.circle_outlined(fx, fy, 26.0, 0xffffff, Stroke(INK, 6.0));
    c.circle(fx + 6.0, fy - 6.0, 3.5, INK);
    c.circle(fx + 18.0, fy - 6.0, 3.5, INK);
    c.arc(fx + 10.0, fy + 4.0, 10.0, (PI * 0.15, PI * 0.85), 3.5, INK);
    c.finish()
}

/// A deep-space scene: nebula clouds, a tilted spiral galaxy and stars.
fn galaxy() -> RgbImage {
    let mut c = Canvas::new(600, 400, 0x060a1f);
    let blobs = [
        (170.0, 170.0, 170.0, 0x5e1a8c, 0.75),
        (420.0, 250.0, 120.0, 0xb0185a, 0.55),
        (480.0, 110.0, 130.0, 0x0d6e7a, 0.6),
        (110.0, 320.0, 140.0, 0x1f2f8a, 0.7),
    ];
    c.shade(0.0, 0.0, 600.0, 400.0, |x, y, cur| {
        let mut col = cur;
        for &(bx, by, r, bc, s) in &blobs {
            let d2 = ((x - bx).powi(2) + (y - by).powi(2)) / (r * r);
            col = mix(col, hexf(bc), s * (-d2 * 1.6).exp());
        }
        col
    });
    // Spiral galaxy: two arms of soft dots on a tilted log spiral.
    let (gx, gy, tilt, squash) = (315.0, 200.0, -0.35f32, 0.42f32);
    let (st, ct) = tilt.sin_cos();
    // Faint disk light under the arms.
    c.shade(gx - 200.0, gy - 140.0, 400.0, 280.0, |x, y, cur| {
        let (dx, dy) = (x - gx, y - gy);
        let (lx, ly) = (dx * ct + dy * st, -dx * st + dy * ct);
        let d2 = (lx / 120.0).powi(2) + (ly / (120.0 * squash)).powi(2);
        mix(cur, hexf(0x9d8fe0), 0.6 * (-d2 * 1.6).exp())
    });
    let mut rng = Lcg(0x9a1a);
    for arm in 0..2 {
        for i in 0..170 {
            let t = i as f32 * 0.045;
            let r = 10.0 * (0.33 * t).exp() * 1.6 + rng.range(-6.0, 6.0);
            let a = t + arm as f32 * PI + rng.range(-0.15, 0.15);
            let (lx, ly) = (r * a.cos(), r * a.sin() * squash);
            let (x, y) = (gx + lx * ct - ly * st, gy + lx * st + ly * ct);
            let col = if i % 3 == 0 { 0xb3c7ff } else { 0xe6dcff };
            c.circle(x, y, rng.range(0.8, 2.2) * (1.0 - i as f32 / 260.0), col);
        }
    }
    c.glow(gx, gy, 30.0, 0xfff1d6, 0.95);
    c.glow(gx, gy, 9.0, 0xffffff, 1.0);
    // Stars, a few with sparkle crosses.
    for i in 0..260 {
        let (x, y) = (rng.range(0.0, 600.0), rng.range(0.0, 400.0));
        let r = rng.range(0.4, 1.3);
        let col = if i % 5 == 0 { 0xbfd4ff } else { 0xffffff };
        c.circle(x, y, r, col);
    }
    for _ in 0..9 {
        let (x, y) = (rng.range(20.0, 580.0), rng.range(20.0, 380.0));
        let l = rng.range(7.0, 13.0);
        c.line((x - l, y), (x + l, y), 1.4, 0xffffff);
        c.line((x, y - l), (x, y + l), 1.4, 0xffffff);
        c.circle(x, y, 2.2, 0xffffff);
    }
    // Ringed planet in the corner.
    let (px, py) = (505.0, 318.0);
    c.ellipse_rot(px, py, 78.0, 16.0, -0.3, 0xc9a46b);
    c.ellipse_rot(px, py, 62.0, 10.0, -0.3, 0x060a1f);
    c.circle(px, py, 40.0, 0xd98b4a);
    c.shade(px - 40.0, py - 40.0, 80.0, 80.0, |x, y, cur| {
        let d2 = (x - px).powi(2) + (y - py).powi(2);
        if d2 <= 40.0 * 40.0 {
            let band = ((y - py) / 9.0).sin() * 0.12;
            let light = 1.0 - ((x - px + 18.0).powi(2) + (y - py + 18.0).powi(2)).sqrt() / 110.0;
            mix(hexf(0x3a1d10), hexf(0xf0b07a), light + band)
        } else {
            cur
        }
    });
    // Front half of the ring passes in front of the planet.
    let ring: Vec<(f32, f32)> = ellipse_points(px, py, 70.0, 13.0, -0.3, 64)
        .into_iter()
        .filter(|&(_, y)| y > py - 2.0)
        .collect();
    let front: Vec<(f32, f32)> = ring
        .iter()
        .copied()
        .filter(|&(x, _)| (x - px).abs() < 66.0)
        .collect();
    let mut sorted = front;
    sorted.sort_by(|a, b| a.0.total_cmp(&b.0));
    c.polyline(&sorted, 7.0, 0xc9a46b);
    c.finish()
}

/// A desk with a computer, coffee, a plant, a window and a wall clock.
fn office_desk() -> RgbImage {
    let mut c = Canvas::new(600, 400, 0xdfe6e9);
    c.vgradient(0.0, 0.0, 600.0, 270.0, &[(0.0, 0xe9eef0), (1.0, 0xc9d3d8)]);
    c.rect(0.0, 270.0, 600.0, 130.0, 0x8e7f6f);
    // Window with blinds.
    c.rect(36.0, 40.0, 170.0, 160.0, 0x90a4ae);
    c.rect(40.0, 44.0, 162.0, 152.0, 0xf5f5f5);
    c.rect(48.0, 52.0, 146.0, 136.0, 0xbfe6ff);
    c.poly(
        &[
            (48.0, 150.0),
            (100.0, 120.0),
            (150.0, 140.0),
            (194.0, 110.0),
            (194.0, 188.0),
            (48.0, 188.0),
        ],
        0x9ccc65,
    );
    for k in 0..9 {
        c.rect(48.0, 54.0 + k as f32 * 12.0, 146.0, 5.0, 0xeceff1);
    }
    c.line((121.0, 52.0), (121.0, 160.0), 1.5, 0x90a4ae);
    // Cork board with sticky notes.
    c.rect_outlined(290.0, 50.0, 170.0, 96.0, 0xc9a273, Stroke(0x8d6e63, 7.0));
    for (x, y, col, a) in [
        (315.0, 72.0, 0xfff176, -0.08f32),
        (360.0, 92.0, 0xf48fb1, 0.1),
        (410.0, 70.0, 0x81d4fa, 0.05),
        (425.0, 110.0, 0xa5d6a7, -0.12),
    ] {
        let (s, co) = a.sin_cos();
        let pts: Vec<(f32, f32)> = [(-16.0, -16.0), (16.0, -16.0), (16.0, 16.0), (-16.0, 16.0)]
            .iter()
            .map(|&(dx, dy)| (x + dx * co - dy * s, y + dx * s + dy * co))
            .collect();
        c.poly(&pts, col);
        c.circle(x, y - 11.0, 2.5, 0xc62828);
    }
    // Wall clock.
    c.circle_outlined(530.0, 80.0, 34.0, 0xffffff, Stroke(0x37474f, 6.0));
    c.line((530.0, 80.0), (530.0, 58.0), 4.0, INK);
    c.line((530.0, 80.0), (546.0, 88.0), 4.0, INK);
    c.circle(530.0, 80.0, 3.0, 0xc62828);

    // Desk.
    c.poly(
        &[(0.0, 262.0), (600.0, 262.0), (600.0, 290.0), (0.0, 290.0)],
        0xb08a66,
    );
    c.rect(0.0, 262.0, 600.0, 4.0, 0xc9a57f);
    c.rect_outlined(40.0, 290.0, 520.0, 110.0, 0x8d6e55, Stroke(0x6d5240, 4.0));
    for x in [60.0, 430.0] {
        c.rect_outlined(x, 306.0, 110.0, 38.0, 0x9c7a60, Stroke(0x6d5240, 3.0));
        c.rect(x + 40.0, 322.0, 30.0, 6.0, 0x5d4037);
    }
    // Monitor and keyboard.
    c.rect(282.0, 236.0, 36.0, 22.0, 0x37474f);
    c.poly(
        &[
            (262.0, 262.0),
            (338.0, 262.0),
            (330.0, 254.0),
            (270.0, 254.0),
        ],
        0x455a64,
    );
    c.rect(200.0, 112.0, 200.0, 130.0, 0x263238);
    c.vgradient(
        210.0,
        122.0,
        180.0,
        108.0,
        &[(0.0, 0x4fc3f7), (1.0, 0x1e88e5)],
    );
    c.rect(222.0, 134.0, 96.0, 60.0, 0xe3f2fd);
    c.rect(222.0, 134.0, 96.0, 10.0, 0x90caf9);
    for k in 0..4 {
        c.rect(
            228.0,
            150.0 + k as f32 * 10.0,
            60.0 + (k % 2) as f32 * 20.0,
            4.0,
            0x90a4ae,
        );
    }
    c.rect(328.0, 134.0, 52.0, 84.0, 0xbbdefb);
    c.poly(
        &[
            (236.0, 282.0),
            (364.0, 282.0),
            (356.0, 268.0),
            (244.0, 268.0),
        ],
        0xcfd8dc,
    );
    c.line((248.0, 275.0), (352.0, 275.0), 2.0, 0x90a4ae);
    // Coffee mug with steam.
    c.rect_outlined(456.0, 228.0, 34.0, 40.0, 0xffffff, Stroke(0x37474f, 4.0));
    c.arc(490.0, 247.0, 10.0, (-PI * 0.5, PI * 0.5), 5.0, 0x37474f);
    c.rect(462.0, 240.0, 22.0, 10.0, 0xe53935);
    for x in [466.0, 480.0] {
        let steam: Vec<(f32, f32)> = (0..7)
            .map(|j| (x + (j as f32 * 1.6).sin() * 4.0, 220.0 - j as f32 * 6.0))
            .collect();
        c.polyline(&steam, 2.5, 0x90a4ae);
    }
    // Potted plant.
    for (a, l) in [
        (-0.9f32, 42.0),
        (-0.45, 50.0),
        (0.0, 56.0),
        (0.45, 50.0),
        (0.9, 42.0),
        (-0.2, 36.0),
        (0.25, 38.0),
    ] {
        let (s, co) = a.sin_cos();
        let (bx, by) = (110.0, 228.0);
        c.ellipse_rot(
            bx + s * l * 0.55,
            by - co * l * 0.55,
            l * 0.5,
            9.0,
            a - PI / 2.0,
            0x388e3c,
        );
    }
    c.poly_outlined(
        &[(88.0, 224.0), (132.0, 224.0), (126.0, 264.0), (94.0, 264.0)],
        0xd07a4a,
        Stroke(0x8d4a2a, 3.0),
    );
    // Stack of papers.
    for k in 0..5 {
        c.rect_outlined(
            520.0 - k as f32,
            240.0 - k as f32 * 5.0,
            56.0,
            6.0,
            0xfafafa,
            Stroke(0xb0bec5, 1.0),
        );
    }
    c.finish()
}

/// A rising stock chart with a big green arrow.
fn stonks() -> RgbImage {
    let mut c = Canvas::new(600, 400, 0x0d1b3d);
    c.vgradient(0.0, 0.0, 600.0, 400.0, &[(0.0, 0x0b1836), (1.0, 0x1a3a70)]);
    for k in 0..=15 {
        c.rect(k as f32 * 40.0, 0.0, 1.5, 400.0, 0x264a84);
    }
    for k in 0..=10 {
        c.rect(0.0, k as f32 * 40.0, 600.0, 1.5, 0x264a84);
    }
    // Candlesticks in the background.
    let mut rng = Lcg(0x5705);
    for i in 0..14 {
        let x = 30.0 + i as f32 * 40.0;
        let mid = 330.0 - i as f32 * 18.0 + rng.range(-20.0, 20.0);
        let h = rng.range(16.0, 40.0);
        let col = if i % 4 == 2 { 0xc62828 } else { 0x2e7d32 };
        c.rect(x + 8.0, mid - h * 0.9, 2.0, h * 1.8, col);
        c.rect(x + 2.0, mid - h / 2.0, 14.0, h, col);
    }
    // Main line: area under it, then the outlined line and the arrow head.
    let pts = [
        (20.0, 340.0),
        (90.0, 300.0),
        (140.0, 318.0),
        (210.0, 250.0),
        (270.0, 272.0),
        (340.0, 196.0),
        (400.0, 214.0),
        (468.0, 130.0),
        (520.0, 92.0),
    ];
    let mut area = pts.to_vec();
    area.push((520.0, 400.0));
    area.push((20.0, 400.0));
    c.poly(&area, 0x1f5c4e);
    c.polyline(&pts, 14.0, 0x0a2a14);
    c.polyline(&pts, 8.0, 0x00e676);
    let (tip, dir) = ((572.0, 50.0), (0.78f32, -0.62f32));
    let base = (tip.0 - dir.0 * 62.0, tip.1 - dir.1 * 62.0);
    let (nx, ny) = (-dir.1 * 34.0, dir.0 * 34.0);
    let head = [tip, (base.0 + nx, base.1 + ny), (base.0 - nx, base.1 - ny)];
    c.poly_outlined(&head, 0x00e676, Stroke(0x0a2a14, 4.0));
    c.finish()
}

/// Sunny park, except for one small dark cloud raining on one sad figure.
fn rain_cloud() -> RgbImage {
    let mut c = Canvas::new(600, 400, 0x90caf9);
    c.vgradient(0.0, 0.0, 600.0, 320.0, &[(0.0, 0x64b5f6), (1.0, 0xe3f2fd)]);
    c.circle(80.0, 70.0, 40.0, 0xffe066);
    for k in 0..12 {
        let a = k as f32 / 12.0 * 2.0 * PI;
        c.line(
            (80.0 + 50.0 * a.cos(), 70.0 + 50.0 * a.sin()),
            (80.0 + 64.0 * a.cos(), 70.0 + 64.0 * a.sin()),
            4.0,
            0xffe066,
        );
    }
    // Grass and a few flowers.
    c.rect(0.0, 318.0, 600.0, 82.0, 0x81c784);
    c.rect(0.0, 318.0, 600.0, 5.0, 0x66bb6a);
    for (x, y, col) in [
        (60.0, 352.0, 0xf06292),
        (140.0, 372.0, 0xfff176),
        (500.0, 350.0, 0xba68c8),
        (560.0, 378.0, 0xf06292),
    ] {
        for k in 0..5 {
            let a = k as f32 / 5.0 * 2.0 * PI;
            c.circle(x + 6.0 * a.cos(), y + 6.0 * a.sin(), 5.0, col);
        }
        c.circle(x, y, 4.0, 0xffca28);
    }
    // Puddle, rain, then the cloud over it.
    let (cx, cy) = (330.0, 128.0);
    c.ellipse(cx, 336.0, 90.0, 12.0, 0x5c8fb0);
    let mut rng = Lcg(0x4a1);
    for _ in 0..70 {
        let x = rng.range(cx - 95.0, cx + 95.0);
        let y = rng.range(cy + 20.0, 320.0);
        let l = 16.0;
        if y + l < 334.0 {
            c.line((x, y), (x - 4.0, y + l), 2.5, 0x4f7fa8);
        }
    }
    let dark = 0x4a5561;
    let puffs = [
        (-70.0, 8.0, 32.0),
        (-30.0, -14.0, 44.0),
        (22.0, -22.0, 50.0),
        (70.0, 0.0, 38.0),
        (0.0, 14.0, 26.0),
    ];
    for (grow, col) in [(4.0, 0x2f363d), (0.0, dark)] {
        for &(dx, dy, r) in &puffs {
            c.circle(cx + dx, cy + dy, r + grow, col);
        }
        c.rect(cx - 70.0, cy, 140.0, 40.0 + grow, col);
    }

    // Sad stick figure, head hanging.
    let (fx, fy) = (330.0, 222.0);
    c.line((fx, fy + 22.0), (fx - 4.0, fy + 72.0), 7.0, INK);
    c.line((fx - 4.0, fy + 72.0), (fx - 24.0, fy + 112.0), 7.0, INK);
    c.line((fx - 4.0, fy + 72.0), (fx + 16.0, fy + 112.0), 7.0, INK);
    c.line((fx - 1.0, fy + 34.0), (fx - 24.0, fy + 72.0), 7.0, INK);
    c.line((fx - 1.0, fy + 34.0), (fx + 20.0, fy + 72.0), 7.0, INK);
    c.circle_outlined(fx + 2.0, fy, 22.0, 0xffffff, Stroke(INK, 6.0));
    c.line((fx - 8.0, fy + 2.0), (fx - 2.0, fy + 2.0), 3.0, INK);
    c.line((fx + 6.0, fy + 2.0), (fx + 12.0, fy + 2.0), 3.0, INK);
    c.arc(fx + 2.0, fy + 16.0, 7.0, (PI * 1.2, PI * 1.8), 3.0, INK);
    c.finish()
}

// ---------------------------------------------------------------------------
// Output
// ---------------------------------------------------------------------------

fn encode_png(img: &RgbImage) -> Vec<u8> {
    let mut out = Vec::new();
    // Best compression: templates are encoded once, at build time.
    PngEncoder::new_with_quality(&mut out, CompressionType::Best, FilterType::Adaptive)
        .write_image(
            img.as_raw(),
            img.width(),
            img.height(),
            image::ExtendedColorType::Rgb8,
        )
        .expect("encoding a PNG into memory cannot fail");
    out
}

fn json_string(s: &str) -> String {
    let mut out = String::from("\"");
    for ch in s.chars() {
        match ch {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// `templates.json`, written by hand so the key order is stable and readable.
fn manifest(entries: &[(&Template, u32, u32)]) -> String {
    let mut out = String::from("{\n  \"version\": 1,\n  \"templates\": [\n");
    for (i, (t, w, h)) in entries.iter().enumerate() {
        let tags: Vec<String> = t.tags.split_whitespace().map(json_string).collect();
        let _ = write!(
            out,
            "    {{\"id\": {}, \"title\": {}, \"file\": {}, \"tags\": [{}], \"width\": {}, \"height\": {}}}",
            json_string(t.id),
            json_string(t.title),
            json_string(&format!("{}.png", t.id)),
            tags.join(", "),
            w,
            h
        );
        out.push_str(if i + 1 < entries.len() { ",\n" } else { "\n" });
    }
    out.push_str("  ]\n}\n");
    out
}

fn main() {
    let out_dir = std::env::args_os()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("data/templates"));
    std::fs::create_dir_all(&out_dir).expect("create output directory");

    let mut entries = Vec::new();
    for t in TEMPLATES {
        let img = (t.draw)();
        let png = encode_png(&img);
        let path = out_dir.join(format!("{}.png", t.id));
        std::fs::write(&path, &png).expect("write template PNG");
        println!(
            "{:<20} {}x{} {:>7} bytes",
            t.id,
            img.width(),
            img.height(),
            png.len()
        );
        entries.push((t, img.width(), img.height()));
    }
    std::fs::write(out_dir.join("templates.json"), manifest(&entries))
        .expect("write templates.json");
    println!("wrote {} templates to {}", entries.len(), out_dir.display());
}
