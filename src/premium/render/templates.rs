//! The template stage: the template PNGs and `templates.json` under
//! `data/templates/`, embedded in the binary and decoded once into a
//! [`Renderer`], and the checks that keep manifest and files in step.

use ab_glyph::FontRef;
use serde::Deserialize;

use super::layout::FontMetrics;
use super::{RenderError, Renderer, TemplateInfo};

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

pub(super) const EMBEDDED_FILES: &[(&str, &[u8])] = embed_templates![
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::premium::render::tests::renderer;

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
