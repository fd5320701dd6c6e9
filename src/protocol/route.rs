//! Where each op lives in the versioned HTTP API: its method and its path template. The
//! templates are written once, beside the op in `for_each_op!`; the HTTP front routes
//! and labels requests by them and `memes --url` sends requests to them, so the server and
//! its client cannot disagree on a route.
//!
//! A template is axum's syntax: literal segments and `{name}` segments, each standing for
//! one non-empty path segment. Only the path is described here; what goes in the query or
//! the body is each side's business (the handler's extractor, the client's encoder).

use http::Method;

/// An op's route in the `/v1` API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub method: Method,
    /// The path template, e.g. `/v1/users/{user}/topups`.
    pub path: &'static str,
}

impl Route {
    /// Whether a request's path (without its query) is this route's: the same number of
    /// segments, the literal ones equal, the `{…}` ones non-empty.
    pub fn matches(&self, path: &str) -> bool {
        template_matches(self.path, path)
    }

    /// The path with its `{…}` segment replaced by `segment`, which the caller has already
    /// percent-encoded. Every op's template has at most one such segment.
    pub fn path_with(&self, segment: &str) -> String {
        match (self.path.find('{'), self.path.find('}')) {
            (Some(open), Some(close)) => {
                format!("{}{segment}{}", &self.path[..open], &self.path[close + 1..])
            }
            _ => self.path.to_string(),
        }
    }
}

/// Whether `path` is an instance of `template` (see [`Route::matches`]); also for the HTTP
/// front's routes that are no op's (images, webhooks).
pub fn template_matches(template: &str, path: &str) -> bool {
    let mut expected = template.split('/');
    let mut given = path.split('/');
    loop {
        match (expected.next(), given.next()) {
            (None, None) => return true,
            (Some(literal), Some(segment)) => {
                let matched = match literal.starts_with('{') && literal.ends_with('}') {
                    true => !segment.is_empty(),
                    false => literal == segment,
                };
                if !matched {
                    return false;
                }
            }
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::protocol::Op;

    #[test]
    fn templates_match_one_nonempty_segment_per_placeholder() {
        let topups = Op::Topup.route();
        assert!(topups.matches("/v1/users/u%201/topups"));
        for other in [
            "/v1/users//topups",
            "/v1/users/u1/topups/x",
            "/v1/users/u1",
            "/v1/users/u1/topup",
        ] {
            assert!(!topups.matches(other), "{other}");
        }
        assert!(Op::Status.route().matches("/v1/status"));
        assert!(!Op::Status.route().matches("/v1/status/"));
    }

    #[test]
    fn a_segment_fills_the_placeholder() {
        assert_eq!(
            Op::Similar.route().path_with("a%2Fb"),
            "/v1/memes/a%2Fb/similar"
        );
        assert_eq!(Op::Audit.route().path_with("x"), "/v1/audit");
    }

    #[test]
    fn every_op_has_its_own_route() {
        for (i, a) in Op::ALL.iter().enumerate() {
            for b in &Op::ALL[i + 1..] {
                assert_ne!(a.route().path, b.route().path, "{a} and {b}");
            }
        }
    }
}
