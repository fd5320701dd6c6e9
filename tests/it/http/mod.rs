//! The HTTP front, through a real HTTP client (ureq) against the real memesd started with
//! `--http 127.0.0.1:0`: every route and status, each way of authenticating, signed
//! webhooks, image caching, hostile clients, the two fronts under load at once, and
//! SIGTERM with a request in flight.

mod auth;
mod cli;
mod fronts;
mod hostile;
mod routes;

use crate::harness::Daemon;
use serde_json::Value;
use std::path::PathBuf;
use ureq::http;

/// An HTTP client for one daemon.
pub struct Api {
    pub base: String,
    agent: ureq::Agent,
}

/// A response, read whole.
pub struct Reply {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: Vec<u8>,
}

impl Reply {
    #[track_caller]
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "{} body is not JSON ({e}): {:?}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Asserts a `200` with a JSON body, and returns the body.
    #[track_caller]
    pub fn ok(&self) -> Value {
        assert_eq!(
            self.status,
            200,
            "expected 200, got {}: {}",
            self.status,
            String::from_utf8_lossy(&self.body)
        );
        assert_eq!(self.header("content-type"), Some("application/json"));
        self.json()
    }

    /// Asserts an RFC 9457 problem with this status and code, and returns it.
    #[track_caller]
    pub fn problem(&self, status: u16, code: &str) -> Value {
        let body = String::from_utf8_lossy(&self.body);
        assert_eq!(self.status, status, "{body}");
        assert_eq!(
            self.header("content-type"),
            Some("application/problem+json"),
            "{body}"
        );
        let problem = self.json();
        assert_eq!(problem["code"], code, "{body}");
        assert_eq!(problem["status"], status, "{body}");
        assert_eq!(problem["type"], "about:blank", "{body}");
        assert!(problem["title"].as_str().is_some_and(|t| !t.is_empty()));
        assert!(
            problem["detail"].as_str().is_some_and(|d| !d.is_empty()),
            "{body}"
        );
        if status == 401 {
            assert!(
                self.header("www-authenticate")
                    .is_some_and(|v| v.starts_with("Bearer")),
                "a 401 says how to authenticate"
            );
        }
        if status == 429 || status == 503 {
            let after: u64 = self
                .header("retry-after")
                .expect("a 429 or 503 says when to come back")
                .parse()
                .expect("Retry-After in seconds");
            assert!(after >= 1);
        }
        problem
    }
}

impl Api {
    pub fn new(daemon: &Daemon) -> Api {
        Api::at(daemon.http_url())
    }

    pub fn at(base: String) -> Api {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(std::time::Duration::from_secs(30)))
            .build()
            .into();
        Api { base, agent }
    }

    /// Sends a request: `bearer` goes into `Authorization`, `headers` as given.
    pub fn send(
        &self,
        method: &str,
        path: &str,
        bearer: Option<&str>,
        headers: &[(&str, &str)],
        body: Option<&str>,
    ) -> Reply {
        let mut request = http::Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base));
        if let Some(bearer) = bearer {
            request = request.header("authorization", format!("Bearer {bearer}"));
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = match body {
            Some(body) => self.agent.run(
                request
                    .header("content-type", "application/json")
                    .body(body.to_string())
                    .unwrap(),
            ),
            None => self.agent.run(request.body(()).unwrap()),
        }
        .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = response.into_body().read_to_vec().expect("a body");
        Reply {
            status,
            headers,
            body,
        }
    }

    /// Sends raw bytes on a new connection (for what a well-behaved client cannot send,
    /// like UTF-8 in a header) and returns the status and body of the answer.
    pub fn raw(&self, request: &[u8]) -> (u16, Vec<u8>) {
        use std::io::{Read, Write};
        let mut stream =
            std::net::TcpStream::connect(self.base.trim_start_matches("http://")).unwrap();
        stream
            .set_read_timeout(Some(std::time::Duration::from_secs(20)))
            .unwrap();
        stream.write_all(request).unwrap();
        let mut response = Vec::new();
        let _ = stream.read_to_end(&mut response);
        let text = String::from_utf8_lossy(&response);
        let status = text
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("not an HTTP response: {text:?}"));
        let body = match response.windows(4).position(|w| w == b"\r\n\r\n") {
            Some(at) => response[at + 4..].to_vec(),
            None => Vec::new(),
        };
        (status, body)
    }

    /// `GET path` with these raw bytes as the bearer credential (connection closed after).
    pub fn get_as(&self, path: &str, bearer: &[u8]) -> (u16, Value) {
        let mut request = format!(
            "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: Bearer "
        )
        .into_bytes();
        request.extend_from_slice(bearer);
        request.extend_from_slice(b"\r\n\r\n");
        let (status, body) = self.raw(&request);
        (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
    }

    pub fn get(&self, path: &str, bearer: Option<&str>) -> Reply {
        self.send("GET", path, bearer, &[], None)
    }

    pub fn post(&self, path: &str, bearer: Option<&str>, body: &str) -> Reply {
        self.send("POST", path, bearer, &[], Some(body))
    }
}

/// A fresh admin key, written to a keys file in the daemon's future directory.
pub struct AdminKey {
    pub key: String,
    pub file: PathBuf,
    _dir: tempfile::TempDir,
}

impl AdminKey {
    pub fn new(name: &str) -> AdminKey {
        let dir = crate::harness::short_tempdir();
        let (key, line) = memes::fronts::http::auth::new_admin_key(name);
        let file = dir.path().join("admin-keys");
        std::fs::write(&file, format!("# memesd admin keys\n{line}\n")).unwrap();
        AdminKey {
            key,
            file,
            _dir: dir,
        }
    }

    pub fn path(&self) -> &str {
        self.file.to_str().unwrap()
    }
}
