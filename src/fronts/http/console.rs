//! The web console: one page and its assets (HTML, CSS, ES modules, an SVG icon), embedded in
//! the binary from `console/` beside this file and served by the HTTP front at `/` and
//! `/assets/…`, unless memesd runs with `--no-console`. The page is a client of the API like
//! any other: nothing here decides anything about money or memes.
//!
//! Assets are named by their content (`app.<hash>.js`) and may be cached for a year; the
//! page itself is revalidated on every visit (`no-cache`, with an ETag), so a new memesd's
//! page brings its new assets along. The names are worked out once, at first use: each
//! source's references to the sources before it (the modules' `"./api.js"` imports, the
//! page's `"/assets/app.js"`) are rewritten to their hashed names, so a change in a module
//! renames every module that imports it too.
//!
//! The page is served with a strict Content-Security-Policy: scripts, styles and connections
//! from this origin only, and images from here and from exactly the origins the current
//! catalogue's images live on. Those are worked out again when a reload swaps the catalogue.

use super::Http;
use super::problem::Problem;
use crate::catalogue::Catalogue;
use crate::domain::ErrorCode;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use sha2::{Digest, Sha256};
use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, LazyLock, Mutex, PoisonError, Weak};

/// Where the assets are served.
pub const ASSETS_PREFIX: &str = "/assets/";
/// How the hashed assets may be cached: for a year, never revalidated (a change renames
/// them).
const IMMUTABLE: &str = "public, max-age=31536000, immutable";
const REFERRER_POLICY: HeaderName = HeaderName::from_static("referrer-policy");
/// Hex digits of an asset's SHA-256 kept in its name.
const HASH_DIGITS: usize = 16;

/// A file of the console as it is in the source tree.
struct Source {
    name: &'static str,
    content_type: &'static str,
    bytes: &'static [u8],
}

macro_rules! source {
    ($name:literal, $content_type:literal) => {
        Source {
            name: $name,
            content_type: $content_type,
            bytes: include_bytes!(concat!("console/", $name)),
        }
    };
}

/// The assets, each after every source it refers to.
const SOURCES: &[Source] = &[
    source!("icon.svg", "image/svg+xml"),
    source!("console.css", "text/css; charset=utf-8"),
    source!("api.js", "text/javascript; charset=utf-8"),
    source!("metrics.js", "text/javascript; charset=utf-8"),
    source!("chart.js", "text/javascript; charset=utf-8"),
    source!("intent.js", "text/javascript; charset=utf-8"),
    source!("app.js", "text/javascript; charset=utf-8"),
];

/// The page, which refers to assets as `"/assets/<name>"`.
const PAGE: &str = include_str!("console/index.html");

/// One asset, ready to serve.
struct Asset {
    content_type: &'static str,
    body: Bytes,
    etag: HeaderValue,
}

/// The page and its assets, with their content-hashed names.
struct Bundle {
    page: Bytes,
    page_etag: HeaderValue,
    /// By served file name (`app.<hash>.js`).
    assets: HashMap<String, Asset>,
}

static BUNDLE: LazyLock<Bundle> = LazyLock::new(Bundle::build);

impl Bundle {
    fn build() -> Bundle {
        // (source name, hashed name) of every asset built so far.
        let mut renamed: Vec<(&str, String)> = Vec::new();
        let mut assets = HashMap::new();
        for source in SOURCES {
            let mut bytes = source.bytes.to_vec();
            if source.content_type.starts_with("text/") {
                let mut text = String::from_utf8(bytes).expect("console sources are UTF-8");
                for (name, hashed) in &renamed {
                    text = text.replace(&format!("\"./{name}\""), &format!("\"./{hashed}\""));
                }
                bytes = text.into_bytes();
            }
            let hash = short_hash(&bytes);
            let hashed = match source.name.rsplit_once('.') {
                Some((stem, extension)) => format!("{stem}.{hash}.{extension}"),
                None => format!("{}.{hash}", source.name),
            };
            assets.insert(
                hashed.clone(),
                Asset {
                    content_type: source.content_type,
                    etag: etag(&hash),
                    body: Bytes::from(bytes),
                },
            );
            renamed.push((source.name, hashed));
        }
        let mut page = PAGE.to_string();
        for (name, hashed) in &renamed {
            page = page.replace(
                &format!("\"{ASSETS_PREFIX}{name}\""),
                &format!("\"{ASSETS_PREFIX}{hashed}\""),
            );
        }
        Bundle {
            page_etag: etag(&short_hash(page.as_bytes())),
            page: Bytes::from(page),
            assets,
        }
    }
}

fn short_hash(bytes: &[u8]) -> String {
    let mut hex = hex::encode(Sha256::digest(bytes));
    hex.truncate(HASH_DIGITS);
    hex
}

fn etag(hash: &str) -> HeaderValue {
    HeaderValue::from_str(&format!("\"{hash}\"")).expect("hex is a header value")
}

/// The image origins of the catalogue last asked about, remembered until another one is
/// in service. Holding a `Weak` keeps the old catalogue's address from being reused, so an
/// address compared equal is the same catalogue.
#[derive(Default)]
struct ImageOrigins {
    last: Mutex<Option<(Weak<Catalogue>, Arc<str>)>>,
}

impl ImageOrigins {
    /// The catalogue's image origins, space-separated, as a CSP source list.
    fn of(&self, catalogue: &Arc<Catalogue>) -> Arc<str> {
        let mut last = self.last.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((known, origins)) = &*last
            && std::ptr::eq(known.as_ptr(), Arc::as_ptr(catalogue))
        {
            return origins.clone();
        }
        let origins: Arc<str> = image_origins(catalogue).into();
        *last = Some((Arc::downgrade(catalogue), origins.clone()));
        origins
    }
}

/// Every distinct origin the catalogue's images are served from, sorted, space-separated.
fn image_origins(catalogue: &Catalogue) -> String {
    let origins: BTreeSet<String> = (0..catalogue.len())
        .filter_map(|index| {
            let index = u32::try_from(index).ok()?;
            let url = &catalogue.meme(index).image;
            let origin = origin_of(url);
            if origin.is_none() {
                tracing::debug!("console: no image origin for {url:?}; its image will not show");
            }
            origin
        })
        .collect();
    origins.into_iter().collect::<Vec<_>>().join(" ")
}

/// `scheme://host[:port]` of an http(s) URL, lower-case, or None when the host is anything
/// but letters, digits, dots and dashes (nothing from a catalogue file may end up as CSP
/// syntax).
fn origin_of(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    let scheme = scheme.to_ascii_lowercase();
    if scheme != "https" && scheme != "http" {
        return None;
    }
    let authority = rest.split(['/', '?', '#']).next()?;
    // Credentials in a URL are not part of its origin.
    let host_port = authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host)
        .to_ascii_lowercase();
    let (host, port) = match host_port.split_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (host_port.as_str(), None),
    };
    let host_ok = !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-')
        && !host.starts_with(['.', '-'])
        && !host.ends_with('-');
    let port_ok =
        port.is_none_or(|p| (1..=5).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_digit()));
    (host_ok && port_ok).then(|| format!("{scheme}://{host_port}"))
}

/// The page's Content-Security-Policy, allowing images from `image_origins` too.
fn content_security_policy(image_origins: &str) -> String {
    let images = if image_origins.is_empty() {
        "'self'".to_string()
    } else {
        format!("'self' {image_origins}")
    };
    format!(
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src {images}; \
         connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
    )
}

/// The console's routes (none with `--no-console`).
pub fn routes(http: &Http) -> Router<Http> {
    if !http.console {
        return Router::new();
    }
    let origins = Arc::new(ImageOrigins::default());
    Router::new()
        .route(
            "/",
            get(
                move |State(http): State<Http>, headers: HeaderMap| async move {
                    page(&http, &origins, &headers)
                },
            ),
        )
        .route("/assets/{file}", get(asset))
}

/// `GET /`: the page.
fn page(http: &Http, origins: &ImageOrigins, request: &HeaderMap) -> Response {
    let bundle = &*BUNDLE;
    let csp = content_security_policy(&origins.of(&http.service.catalogue()));
    let mut response = if matches_etag(request, &bundle.page_etag) {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        (StatusCode::OK, bundle.page.clone()).into_response()
    };
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(header::ETAG, bundle.page_etag.clone());
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_str(&csp).expect("the policy is plain ASCII"),
    );
    protect(headers);
    response
}

/// `GET /assets/{file}`: an asset, by its hashed name.
async fn asset(Path(file): Path<String>, request: HeaderMap) -> Result<Response, Problem> {
    let asset = BUNDLE.assets.get(&file).ok_or_else(|| {
        Problem::new(
            ErrorCode::NotFound,
            format!("no console asset {file:?} (the page names its assets; reload it)"),
        )
    })?;
    let mut response = if matches_etag(&request, &asset.etag) {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        (StatusCode::OK, asset.body.clone()).into_response()
    };
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(asset.content_type),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(IMMUTABLE));
    headers.insert(header::ETAG, asset.etag.clone());
    protect(headers);
    Ok(response)
}

/// Headers every console response carries.
fn protect(headers: &mut HeaderMap) {
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
}

/// Whether the request's `If-None-Match` names `etag`.
fn matches_etag(request: &HeaderMap, etag: &HeaderValue) -> bool {
    let Ok(etag) = etag.to_str() else {
        return false;
    };
    request
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|tags| tags.split(','))
        .any(|tag| {
            let tag = tag.trim();
            tag == "*" || tag.strip_prefix("W/").unwrap_or(tag) == etag
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What follows each occurrence of `marker` up to the closing quote.
    fn references<'a>(text: &'a str, marker: &str) -> Vec<&'a str> {
        text.match_indices(marker)
            .map(|(at, _)| {
                let rest = &text[at + marker.len()..];
                &rest[..rest.find('"').expect("a closing quote")]
            })
            .collect()
    }

    #[test]
    fn every_asset_the_page_names_is_served() {
        let bundle = &*BUNDLE;
        let page = std::str::from_utf8(&bundle.page).unwrap();
        let named = references(page, &format!("\"{ASSETS_PREFIX}"));
        assert!(
            named.len() >= 3,
            "the page names its script, style and icon: {named:?}"
        );
        for file in named {
            assert!(
                bundle.assets.contains_key(file),
                "the page names {file:?}, which is not served"
            );
        }
    }

    #[test]
    fn every_module_a_module_imports_is_served() {
        let bundle = &*BUNDLE;
        let mut imports = 0;
        for (file, asset) in &bundle.assets {
            if !asset.content_type.starts_with("text/javascript") {
                continue;
            }
            let text = std::str::from_utf8(&asset.body).unwrap();
            for import in references(text, "from \"./") {
                imports += 1;
                assert!(
                    bundle.assets.contains_key(import),
                    "{file} imports {import:?}, which is not served"
                );
            }
        }
        assert!(imports >= 3, "app.js imports the other modules");
    }

    #[test]
    fn served_names_carry_their_content_hash() {
        for (file, asset) in &BUNDLE.assets {
            let hash = short_hash(&asset.body);
            assert!(
                file.contains(&format!(".{hash}.")),
                "{file} is not named by {hash}"
            );
        }
        assert_eq!(BUNDLE.assets.len(), SOURCES.len());
    }

    #[test]
    fn origins_are_only_hosts_and_ports() {
        let cases = [
            (
                "https://i.imgflip.com/4xgqu.jpg",
                Some("https://i.imgflip.com"),
            ),
            ("HTTPS://I.ImgFlip.com", Some("https://i.imgflip.com")),
            (
                "http://127.0.0.1:8081/a.png?x#y",
                Some("http://127.0.0.1:8081"),
            ),
            ("https://user:pw@example.com/a", Some("https://example.com")),
            ("https://example.com;script-src/x", None),
            ("https://exa'mple.com/x", None),
            ("https://example.com:99999999/x", None),
            ("https://example.com:/x", None),
            ("ftp://example.com/x", None),
            ("https:///x", None),
            ("https://-bad.com/", None),
        ];
        for (url, origin) in cases {
            assert_eq!(origin_of(url).as_deref(), origin, "{url}");
        }
    }

    #[test]
    fn the_policy_allows_the_catalogue_image_origins() {
        let catalogue = Arc::new(Catalogue::embedded().unwrap());
        let origins = ImageOrigins::default();
        let listed = origins.of(&catalogue);
        assert!(listed.contains("https://i.imgflip.com"), "{listed}");
        assert!(Arc::ptr_eq(&listed, &origins.of(&catalogue)), "remembered");
        let policy = content_security_policy(&listed);
        assert!(policy.starts_with(
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' https://"
        ));
        let other = Arc::new(
            Catalogue::from_json(
                br#"{"version":1,"memes":[{"id":"a","title":"A","image":"https://img.example.org/a.png","source":"https://example.org/a"}]}"#,
                "test",
            )
            .unwrap(),
        );
        assert_eq!(&*origins.of(&other), "https://img.example.org");
        assert!(content_security_policy("").contains("img-src 'self'; "));
    }
}
