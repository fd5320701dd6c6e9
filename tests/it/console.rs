//! The web console as memesd serves it: the page's headers (its Content-Security-Policy, with
//! exactly the catalogue's image origins, also after a reload), content-hashed assets cached
//! for good, `--no-console`, and `GET /v1/whoami`, the probe the console signs in with. (What
//! the page does in a browser: tests/browser/.)

use crate::harness::Daemon;
use serde_json::Value;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// One HTTP/1.1 answer.
struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn text(&self) -> String {
        String::from_utf8(self.body.clone()).expect("a text body")
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("a JSON body")
    }
}

/// The address memesd's log says its HTTP front got (it was given port 0).
fn http_address(daemon: &Daemon) -> String {
    let log = daemon.log();
    let at = log
        .find(" and http://")
        .unwrap_or_else(|| panic!("no HTTP address in the log:\n{log}"));
    let rest = &log[at + " and http://".len()..];
    rest[..rest.find(' ').expect("a space after the address")].to_string()
}

/// `GET path` with `headers`, on a connection of its own.
fn get(address: &str, path: &str, headers: &[(&str, &str)]) -> Reply {
    let mut stream = TcpStream::connect(address).expect("connect to the HTTP front");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut request = format!("GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).unwrap();
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a complete head");
    let head = String::from_utf8(raw[..split].to_vec()).unwrap();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers: Vec<(String, String)> = lines
        .map(|line| {
            let (name, value) = line.split_once(':').unwrap();
            (name.to_string(), value.trim().to_string())
        })
        .collect();
    assert!(
        !headers
            .iter()
            .any(|(n, _)| n.eq_ignore_ascii_case("transfer-encoding")),
        "bodies are sent with their length"
    );
    Reply {
        status,
        headers,
        body: raw[split + 4..].to_vec(),
    }
}

/// Every `/assets/…` the page names.
fn assets_named(page: &str) -> Vec<String> {
    page.match_indices("\"/assets/")
        .map(|(at, _)| {
            let rest = &page[at + 1..];
            rest[..rest.find('"').unwrap()].to_string()
        })
        .collect()
}

#[test]
fn the_page_comes_with_its_policy_and_its_assets_are_cached_for_good() {
    let daemon = Daemon::start_with(&["--http", "127.0.0.1:0"]);
    let address = http_address(&daemon);
    let page = get(&address, "/", &[]);
    assert_eq!(page.status, 200);
    assert_eq!(
        page.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    assert_eq!(page.header("cache-control"), Some("no-cache"));
    assert_eq!(page.header("x-content-type-options"), Some("nosniff"));
    assert_eq!(page.header("referrer-policy"), Some("no-referrer"));
    let policy = page.header("content-security-policy").expect("a policy");
    for directive in [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "connect-src 'self'",
        "frame-ancestors 'none'",
        "base-uri 'none'",
        "form-action 'self'",
    ] {
        assert!(
            policy.split("; ").any(|d| d == directive),
            "{directive} in {policy}"
        );
    }
    let images = policy
        .split("; ")
        .find(|d| d.starts_with("img-src "))
        .expect("img-src");
    // The embedded catalogue's images live on these hosts (among others).
    for origin in ["https://i.imgflip.com", "https://i.kym-cdn.com"] {
        assert!(
            images.split(' ').any(|o| o == origin),
            "{origin} in {images}"
        );
    }
    assert!(images.starts_with("img-src 'self' "));

    // Revalidation: the same page is not sent again.
    let etag = page.header("etag").expect("an ETag").to_string();
    let again = get(&address, "/", &[("If-None-Match", &etag)]);
    assert_eq!(again.status, 304);
    assert!(again.body.is_empty());
    assert!(again.header("content-security-policy").is_some());

    let page = page.text();
    let assets = assets_named(&page);
    assert!(
        assets.iter().any(|a| a.ends_with(".js"))
            && assets.iter().any(|a| a.ends_with(".css"))
            && assets.iter().any(|a| a.ends_with(".svg")),
        "the page names its script, stylesheet and icon: {assets:?}"
    );
    for asset in &assets {
        let reply = get(&address, asset, &[]);
        assert_eq!(reply.status, 200, "{asset} is served");
        assert_eq!(
            reply.header("cache-control"),
            Some("public, max-age=31536000, immutable"),
            "{asset}"
        );
        assert_eq!(reply.header("x-content-type-options"), Some("nosniff"));
        let expected = match asset.rsplit('.').next() {
            Some("js") => "text/javascript; charset=utf-8",
            Some("css") => "text/css; charset=utf-8",
            _ => "image/svg+xml",
        };
        assert_eq!(reply.header("content-type"), Some(expected), "{asset}");
        let etag = reply.header("etag").expect("an ETag");
        assert_eq!(get(&address, asset, &[("If-None-Match", etag)]).status, 304);
        // Named by their content: the name carries the start of the body's SHA-256.
        let hash = asset.split('.').nth(1).expect("name.hash.ext");
        let digest = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&reply.body));
        assert!(digest.starts_with(hash), "{asset}: sha256 {digest}");
    }
    // The modules the script imports are served under their hashed names too.
    let script = assets.iter().find(|a| a.ends_with(".js")).unwrap();
    let app = get(&address, script, &[]).text();
    let imports: Vec<&str> = app
        .match_indices("from \"./")
        .map(|(at, _)| {
            let rest = &app[at + "from \"./".len()..];
            &rest[..rest.find('"').unwrap()]
        })
        .collect();
    assert!(imports.len() >= 3, "{imports:?}");
    for module in imports {
        assert_eq!(
            get(&address, &format!("/assets/{module}"), &[]).status,
            200,
            "{module}"
        );
    }

    // A name that is not an asset's (say, one without its hash) is a problem, not a page.
    let missing = get(&address, "/assets/app.js", &[]);
    assert_eq!(missing.status, 404);
    assert_eq!(
        missing.header("content-type"),
        Some("application/problem+json")
    );
    assert_eq!(missing.json()["code"], "not_found");
}

#[test]
fn no_console_turns_the_page_off_and_leaves_the_api() {
    let daemon = Daemon::start_with(&["--http", "127.0.0.1:0", "--no-console"]);
    let address = http_address(&daemon);
    for path in ["/", "/assets/app.0123456789abcdef.js"] {
        let reply = get(&address, path, &[]);
        assert_eq!(reply.status, 404, "{path}");
        assert_eq!(
            reply.header("content-type"),
            Some("application/problem+json")
        );
        assert_eq!(reply.json()["code"], "not_found");
    }
    let whoami = get(&address, "/v1/whoami", &[("Authorization", "Bearer u1")]);
    assert_eq!(whoami.status, 200);
    assert_eq!(get(&address, "/healthz", &[]).status, 200);
}

#[test]
fn image_origins_follow_the_catalogue_across_a_reload() {
    let dir = crate::harness::short_tempdir();
    let file = dir.path().join("catalogue.json");
    let catalogue = |images: &[&str]| {
        let memes: Vec<Value> = images
            .iter()
            .enumerate()
            .map(|(i, image)| {
                serde_json::json!({
                    "id": format!("meme-{i}"),
                    "title": format!("Meme {i}"),
                    "image": image,
                    "source": "https://example.org/about",
                })
            })
            .collect();
        serde_json::json!({"version": 1, "memes": memes}).to_string()
    };
    std::fs::write(
        &file,
        catalogue(&[
            "https://img.example.org/a.png",
            "https://IMG.example.org/b.png",
            "http://127.0.0.1:8081/c.png",
        ]),
    )
    .unwrap();
    let daemon = Daemon::start_with(&[
        "--http",
        "127.0.0.1:0",
        "--catalogue",
        file.to_str().unwrap(),
    ]);
    let address = http_address(&daemon);
    let images = || {
        let reply = get(&address, "/", &[]);
        let policy = reply.header("content-security-policy").unwrap().to_string();
        policy
            .split("; ")
            .find(|d| d.starts_with("img-src "))
            .unwrap()
            .to_string()
    };
    assert_eq!(
        images(),
        "img-src 'self' http://127.0.0.1:8081 https://img.example.org"
    );
    std::fs::write(&file, catalogue(&["https://cdn.example.net/z.png"])).unwrap();
    daemon.signal(nix::sys::signal::Signal::SIGHUP);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let now = images();
        if now == "img-src 'self' https://cdn.example.net" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "still {now} after the reload:\n{}",
            daemon.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn whoami_names_the_caller_of_each_kind_of_bearer() {
    let dir = crate::harness::short_tempdir();
    let keys = dir.path().join("admin-keys");
    let (key, line) = memes::fronts::http::auth::new_admin_key("ops");
    std::fs::write(&keys, format!("{line}\n")).unwrap();
    let daemon = Daemon::start_with(&[
        "--http",
        "127.0.0.1:0",
        "--admin-keys",
        keys.to_str().unwrap(),
    ]);
    let address = http_address(&daemon);
    let whoami = |bearer: Option<&str>| {
        let authorization = bearer.map(|b| format!("Bearer {b}"));
        let headers: Vec<(&str, &str)> = authorization
            .as_deref()
            .map(|a| vec![("Authorization", a)])
            .unwrap_or_default();
        get(&address, "/v1/whoami", &headers)
    };
    let user = whoami(Some("u1"));
    assert_eq!(user.status, 200);
    assert_eq!(user.header("cache-control"), Some("no-store"));
    assert_eq!(
        user.json(),
        serde_json::json!({"kind": "user", "user": "u1", "premium": false})
    );
    assert_eq!(
        whoami(Some(&key)).json(),
        serde_json::json!({"kind": "admin", "name": "ops"})
    );
    assert_eq!(
        whoami(None).json(),
        serde_json::json!({"kind": "anonymous"})
    );
    let refused = whoami(Some(&"x".repeat(200)));
    assert_eq!(refused.status, 401);
    assert_eq!(refused.json()["code"], "unauthorized");
    assert!(refused.header("www-authenticate").is_some());
    // It reads no account: asking opened none.
    assert_eq!(daemon.balance("u1"), None);
    // And the API's own description lists it.
    let openapi = get(&address, "/openapi.json", &[]).json();
    assert!(
        openapi["paths"]["/v1/whoami"]["get"].is_object(),
        "/v1/whoami in /openapi.json"
    );
}

#[test]
fn whoami_reads_a_signed_token_and_its_premium_claim() {
    let secret = "console-test-secret-0123456789";
    let dir = crate::harness::short_tempdir();
    let key = dir.path().join("claims.key");
    std::fs::write(&key, format!("{secret}\n")).unwrap();
    let daemon = Daemon::start_with(&[
        "--http",
        "127.0.0.1:0",
        "--claims-key",
        key.to_str().unwrap(),
    ]);
    let address = http_address(&daemon);
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 600;
    let token = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &serde_json::json!({"sub": "u7", "tier": "premium", "exp": exp}),
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap();
    let bearer = format!("Bearer {token}");
    let who = get(&address, "/v1/whoami", &[("Authorization", &bearer)]);
    assert_eq!(who.status, 200);
    assert_eq!(
        who.json(),
        serde_json::json!({"kind": "user", "user": "u7", "premium": true})
    );
    // With a claims key, a plain user id is no credential.
    let refused = get(&address, "/v1/whoami", &[("Authorization", "Bearer u7")]);
    assert_eq!(refused.status, 401);
    assert_eq!(refused.json()["code"], "unauthorized");
}
