//! Making a meme image: choose the template that fits the query (by its words and its
//! meaning, ranked as catalogue search ranks memes), write a caption from the query and the
//! place, produce the PNG (built-in renderer, or an operator's external
//! generator command), and store it content-addressed under the data directory.
//!
//! Everything here is deterministic for the same inputs, so the same request gives the same
//! bytes (and the same file). Charging is not done here: the caller charges only once the
//! file is completely written.

use super::PremiumError;
use super::render::{Renderer, TemplateInfo};
use crate::catalogue::hybrid;
use crate::catalogue::search::{Document, SearchIndex};
use crate::catalogue::semantic::{Model, Vectors};
use crate::domain::ErrorCode;
use crate::protocol::Location;
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::io::Cursor;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Largest image an external generator may return.
const MAX_EXTERNAL_PNG: u64 = 32 << 20;
/// Bottom lines used when there is no place to mention; one is picked from the query.
const PUNCHLINES: [&str; 8] = [
    "and that's fine",
    "every single time",
    "change my mind",
    "nailed it",
    "no regrets",
    "trust the process",
    "peak performance",
    "it's a feature",
];

/// How images are produced.
pub enum Backend {
    /// The renderer built into memesd.
    Builtin,
    /// An external command (run with `sh -c`): request JSON on stdin, PNG on stdout.
    External { command: String, timeout: Duration },
}

/// A meme to make.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Plan {
    pub template: String,
    pub top: String,
    pub bottom: String,
}

/// A produced image.
pub struct Png {
    pub bytes: Vec<u8>,
    pub width: u32,
    pub height: u32,
}

/// The template index and the backend.
pub struct Generator {
    renderer: Renderer,
    index: SearchIndex,
    /// The model and each template's embedding (of its description), when built with one.
    meaning: Option<(&'static Model, Vectors)>,
    backend: Backend,
}

impl Generator {
    pub fn new(renderer: Renderer, backend: Backend) -> Generator {
        let index = SearchIndex::build(renderer.templates().iter().map(|t| Document {
            title: &t.title,
            tags: &t.tags,
            categories: &[],
        }));
        let meaning = Model::embedded().map(|model| {
            let texts = renderer.templates().iter().map(|t| {
                if t.description.is_empty() {
                    format!("{}. {}", t.title, t.tags.join(", "))
                } else {
                    t.description.clone()
                }
            });
            (model, Vectors::build(model, texts))
        });
        Generator {
            renderer,
            index,
            meaning,
            backend,
        }
    }

    pub fn templates(&self) -> &[TemplateInfo] {
        self.renderer.templates()
    }

    pub fn backend(&self) -> &Backend {
        &self.backend
    }

    /// The template and caption for a query and a place.
    pub fn plan(&self, query: Option<&str>, location: Option<&Location>) -> Plan {
        let query = query.map(str::trim).filter(|q| !q.is_empty());
        let templates = self.renderer.templates();
        let digest = Sha256::digest(query.unwrap_or("").as_bytes());
        let template = query
            .and_then(|q| {
                let hits = self.index.search(q, templates.len());
                let cosines = self
                    .meaning
                    .as_ref()
                    .and_then(|(model, vectors)| Some(vectors.cosines(&model.embed(q)?)));
                hybrid::fuse(&hits, cosines.as_deref())
                    .first()
                    .map(|best| &templates[best.doc as usize])
            })
            .unwrap_or(&templates[digest[0] as usize % templates.len()]);
        let top = query.map_or_else(|| template.title.clone(), str::to_string);
        let bottom = match location {
            Some(place) if place.at_sea => format!(
                "somewhere at sea off {}",
                place.landmass.as_deref().unwrap_or(&place.city)
            ),
            Some(place) => format!("live from {}, {}", place.city, place.country),
            None => PUNCHLINES[digest[1] as usize % PUNCHLINES.len()].to_string(),
        };
        Plan {
            template: template.id.clone(),
            top,
            bottom,
        }
    }

    /// Produces the PNG for `plan`. Blocking for the built-in renderer (call it off the async
    /// threads); `request` is what an external generator receives on stdin.
    pub async fn produce(
        &self,
        plan: &Plan,
        request: &impl Serialize,
    ) -> Result<Png, PremiumError> {
        match &self.backend {
            Backend::Builtin => {
                let rendered = tokio::task::block_in_place(|| {
                    self.renderer
                        .render(&plan.template, &plan.top, &plan.bottom)
                })
                .map_err(|e| {
                    PremiumError::internal(format!(
                        "rendering failed: {}",
                        crate::causes::with_causes(&e)
                    ))
                })?;
                Ok(Png {
                    bytes: rendered.png,
                    width: rendered.width,
                    height: rendered.height,
                })
            }
            Backend::External { command, timeout } => {
                run_external(command, *timeout, request).await
            }
        }
    }
}

/// Runs the external generator with a time limit; its failure, a timeout or output that is
/// not a PNG is an error (and the caller charges nothing).
async fn run_external(
    command: &str,
    timeout: Duration,
    request: &impl Serialize,
) -> Result<Png, PremiumError> {
    let failed = |message: String| {
        PremiumError::new(
            ErrorCode::Internal,
            format!("the image generator {message}"),
        )
    };
    let input = serde_json::to_vec(request).expect("generator request serialises");
    let mut child = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(command)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| failed(format!("could not be started: {e}")))?;
    let mut stdin = child.stdin.take().expect("piped");
    let mut stdout = child
        .stdout
        .take()
        .expect("piped")
        .take(MAX_EXTERNAL_PNG + 1);
    let mut stderr = child.stderr.take().expect("piped").take(4096);
    let work = async {
        let feed = async {
            // A generator may not read its input at all; that is not an error.
            let _ = stdin.write_all(&input).await;
            drop(stdin);
        };
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let (_, read_out, _) = tokio::join!(
            feed,
            stdout.read_to_end(&mut out),
            stderr.read_to_end(&mut err)
        );
        let status = child.wait().await;
        (read_out.and(status), out, err)
    };
    let (status, out, err) = match tokio::time::timeout(timeout, work).await {
        Ok(finished) => finished,
        Err(_) => {
            return Err(PremiumError::new(
                ErrorCode::Unavailable,
                format!(
                    "the image generator did not finish within {timeout:?}; nothing was charged"
                ),
            ));
        }
    };
    let status = status.map_err(|e| failed(format!("failed: {e}")))?;
    if !status.success() {
        let detail = String::from_utf8_lossy(&err);
        return Err(failed(format!("failed ({status}): {}", detail.trim())));
    }
    if out.len() as u64 > MAX_EXTERNAL_PNG {
        return Err(failed(format!(
            "returned more than {MAX_EXTERNAL_PNG} bytes"
        )));
    }
    let (width, height) =
        png_dimensions(&out).ok_or_else(|| failed("did not return a PNG image".into()))?;
    Ok(Png {
        bytes: out,
        width,
        height,
    })
}

/// Width and height of a PNG, or `None` if `bytes` is not one.
fn png_dimensions(bytes: &[u8]) -> Option<(u32, u32)> {
    image::ImageReader::with_format(Cursor::new(bytes), image::ImageFormat::Png)
        .into_dimensions()
        .ok()
}

/// Where a PNG was stored.
pub struct Stored {
    pub path: PathBuf,
    pub sha256: String,
}

/// Stores `bytes` as `<dir>/<sha256>.png`, atomically and durably (temporary file, fsync,
/// rename, fsync the directory). An identical image already there is reused.
pub fn store_png(dir: &Path, bytes: &[u8]) -> std::io::Result<Stored> {
    let sha256 = format!("{:x}", Sha256::digest(bytes));
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    let path = dir.join(format!("{sha256}.png"));
    if std::fs::metadata(&path).is_ok_and(|m| m.len() == bytes.len() as u64) {
        return Ok(Stored { path, sha256 });
    }
    let tmp = dir.join(format!(".{sha256}.png.tmp"));
    crate::atomic_file::write(&tmp, &path, bytes)?;
    Ok(Stored { path, sha256 })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn generator() -> Generator {
        Generator::new(Renderer::embedded().unwrap(), Backend::Builtin)
    }

    #[test]
    fn the_query_picks_a_fitting_template_and_becomes_the_caption() {
        let generator = generator();
        let plan = generator.plan(Some("when the build is on fire"), None);
        assert_eq!(plan.template, "this-is-fine");
        assert_eq!(plan.top, "when the build is on fire");
        assert!(PUNCHLINES.contains(&plan.bottom.as_str()));
        assert_eq!(
            generator.plan(Some("when the build is on fire"), None),
            plan,
            "deterministic"
        );
        let cat = generator.plan(Some("my cat at sunset"), None);
        assert_eq!(cat.template, "sunset-cat");
    }

    #[cfg(feature = "semantic")]
    #[test]
    fn a_caption_without_the_templates_words_picks_by_its_meaning() {
        let generator = generator();
        for (caption, template) in PROBE_CAPTIONS {
            assert!(
                generator.index.search(caption, 1).is_empty(),
                "{caption:?} shares words with a template: pick another"
            );
            assert_eq!(
                generator.plan(Some(caption), None).template,
                template,
                "{caption:?}"
            );
        }
    }

    /// Captions that share no word with any template's title or tags.
    #[cfg(feature = "semantic")]
    const PROBE_CAPTIONS: [(&str, &str); 3] = [
        ("my savings grew a lot this year", "stonks"),
        ("my shares are worth a fortune now", "stonks"),
        ("should I eat pizza or pasta tonight", "approve-disapprove"),
    ];

    #[test]
    fn the_place_writes_the_bottom_line() {
        let generator = generator();
        let paris = Location {
            country_code: "FR".into(),
            country: "France".into(),
            city: "Paris".into(),
            region: "Île-de-France".into(),
            region_code: None,
            distance_km: 1.0,
            at_sea: false,
            landmass: None,
        };
        assert_eq!(
            generator.plan(Some("stonks"), Some(&paris)).bottom,
            "live from Paris, France"
        );
        let sea = Location {
            at_sea: true,
            landmass: Some("Long Island".into()),
            ..paris
        };
        assert_eq!(
            generator.plan(None, Some(&sea)).bottom,
            "somewhere at sea off Long Island"
        );
    }

    #[test]
    fn pngs_are_stored_by_content() {
        let dir = tempfile::tempdir().unwrap();
        let first = store_png(dir.path(), b"\x89PNG fake").unwrap();
        let again = store_png(dir.path(), b"\x89PNG fake").unwrap();
        assert_eq!(first.path, again.path);
        assert_eq!(std::fs::read(&first.path).unwrap(), b"\x89PNG fake");
        assert!(first.path.ends_with(format!("{}.png", first.sha256)));
        assert!(png_dimensions(b"\x89PNG fake").is_none());
    }
}
