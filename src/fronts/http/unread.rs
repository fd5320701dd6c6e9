//! Whether a request's body was read to its end, so that a connection whose request left
//! bytes unread is closed with the answer rather than offered for another request.
//!
//! A handler that answers without reading its body (a refusal made before the body is
//! needed, such as a wrong method) leaves the body on the connection. hyper then drains it
//! if it has already arrived, or else closes the connection; but it may have written the
//! answer first, so the answer says nothing of the close, and a client that keeps
//! connections alive sends its next request on one that is being closed (ureq: "peer
//! disconnected", seen under load when a client sends the head and the body in two writes).
//! [`Watched`] tells [`super::measured`] to say `Connection: close` instead: the client
//! opens a new connection for its next request. Nothing was ever charged twice or lost by
//! this (the next request never reached the daemon), but a client saw an error for a
//! request it could simply have sent again.

use axum::body::{Bytes, HttpBody};
use hyper::body::{Frame, SizeHint};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

/// A request body that records when it has been read to its end.
pub struct Watched<B> {
    body: B,
    ended: Arc<AtomicBool>,
}

/// Whether the [`Watched`] body it came with was read to its end.
#[derive(Clone)]
pub struct Ended(Arc<AtomicBool>);

impl Ended {
    pub fn get(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

/// Watches `body`; gives it back unwatched when there is nothing to read (no body, or an
/// empty one), which is every `GET`, so the hot route pays nothing.
pub fn watch<B: HttpBody>(body: B) -> Result<(Watched<B>, Ended), B> {
    if body.is_end_stream() {
        return Err(body);
    }
    let ended = Arc::new(AtomicBool::new(false));
    Ok((
        Watched {
            body,
            ended: ended.clone(),
        },
        Ended(ended),
    ))
}

impl<B: HttpBody<Data = Bytes> + Unpin> HttpBody for Watched<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.body).poll_frame(cx);
        if matches!(polled, Poll::Ready(None)) || this.body.is_end_stream() {
            this.ended.store(true, Ordering::Release);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    #[tokio::test]
    async fn a_body_read_to_its_end_says_so_and_an_empty_one_is_not_watched() {
        assert!(watch(axum::body::Body::empty()).is_err());
        let (body, ended) = watch(axum::body::Body::from("{\"amount\":5}"))
            .ok()
            .unwrap();
        assert!(!ended.get());
        let bytes = body.collect().await.unwrap().to_bytes();
        assert_eq!(&bytes[..], b"{\"amount\":5}");
        assert!(ended.get());
    }

    #[tokio::test]
    async fn a_body_left_unread_says_so() {
        let (body, ended) = watch(axum::body::Body::from("{}")).ok().unwrap();
        drop(body);
        assert!(!ended.get());
    }
}
