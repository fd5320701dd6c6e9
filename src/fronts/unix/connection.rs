//! One client connection: a reader that takes request lines in order and hands them to the
//! service, and a writer that sends the replies in the same order, each once its change is
//! durable. Pipelined requests flow: the reader does not wait for a reply's flush before
//! reading the next request, which is what lets concurrent changes share one disk flush.
//!
//! Everything a client can make the daemon hold is bounded: a request line (64 KiB, then
//! `line_too_long` and the connection closes), replies not yet sent (`max_in_flight`, after
//! which the reader stops reading), time to complete a line (`idle_timeout`) and time for the
//! client to take a reply (`write_timeout`). A slow or stalled client costs only itself.
//!
//! Logs: a connection runs in a `connection` span (its number and the peer's uid), each
//! request in a `request` span named by its `id`, or by its number on the connection when it
//! has none, and each reply gets an access line. All at debug level: at the default level no
//! span is created and nothing is formatted (see [`crate::daemon::logging`]).

use crate::protocol::ndjson;
use crate::protocol::{ErrorBody, ErrorCode, MAX_LINE_BYTES, Request};
use crate::service::{Answer, Caller, Peer, Service};
use crate::telemetry::{self, Front, Op};
use futures_util::StreamExt;
use interprocess::local_socket::tokio::Stream;
use interprocess::local_socket::traits::StreamCommon;
use serde_json::value::RawValue;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::io::{AsyncWriteExt, BufWriter};
use tokio::sync::mpsc;
use tokio::time::{Instant, timeout};
use tokio_util::codec::{AnyDelimiterCodec, AnyDelimiterCodecError, FramedRead};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

/// Per-connection bounds.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Open connections at once; beyond it a new connection gets `busy` and is closed.
    pub max_connections: usize,
    /// A connection that completes no request line for this long is closed.
    pub idle_timeout: Duration,
    /// A client that takes no reply bytes for this long is disconnected.
    pub write_timeout: Duration,
    /// Replies held for one connection before its reader stops reading.
    pub max_in_flight: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 4096,
            idle_timeout: Duration::from_secs(300),
            write_timeout: Duration::from_secs(30),
            max_in_flight: 256,
        }
    }
}

/// Serves one connection until the client leaves, misbehaves, or the daemon shuts down
/// (then requests already read are still answered).
pub async fn serve(
    stream: Stream,
    service: Arc<Service>,
    limits: Limits,
    shutdown: CancellationToken,
) {
    let caller = Caller::Local(match stream.peer_creds() {
        Ok(creds) => Peer {
            uid: creds.euid(),
            gid: creds.egid(),
        },
        Err(_) => Peer {
            uid: None,
            gid: None,
        },
    });
    let _open = telemetry::connection_opened(Front::Unix);
    let span = tracing::debug_span!(
        "connection",
        conn = NEXT_CONNECTION.fetch_add(1, Ordering::Relaxed),
        uid = caller_uid(&caller),
    );
    // Reader and writer share the stream: `&Stream` reads and writes.
    let stream = Arc::new(stream);
    let (replies, pending) = mpsc::channel(limits.max_in_flight);
    let writer = tokio::spawn(
        write_replies(stream.clone(), pending, limits.write_timeout).instrument(span.clone()),
    );
    read_requests(&stream, &service, &caller, &limits, &shutdown, &replies)
        .instrument(span)
        .await;
    drop(replies);
    let _ = writer.await;
}

/// Numbers connections for the logs.
static NEXT_CONNECTION: AtomicU64 = AtomicU64::new(1);

fn caller_uid(caller: &Caller) -> Option<u32> {
    match caller {
        Caller::Local(peer) => peer.uid,
        _ => None,
    }
}

/// How a request is named in the logs: the client's `id` (its JSON text), or its number on
/// the connection.
struct RequestLabel<'a>(Option<&'a RawValue>, u64);

impl std::fmt::Display for RequestLabel<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some(id) => f.write_str(id.get().trim_matches('"')),
            None => write!(f, "{}", self.1),
        }
    }
}

/// A reply on its way out, in request order: encoded already, or an answer to encode once
/// it settles (when the change it reports is durable).
#[expect(
    clippy::large_enum_variant,
    reason = "moved once, into the connection's reply queue; boxing would allocate per request"
)]
pub enum Outgoing {
    Ready(Vec<u8>),
    Answer {
        id: Option<Box<RawValue>>,
        answer: Answer,
        op: Op,
        /// When the request line was read, if its latency is wanted (metrics, debug logs).
        received: Option<Instant>,
        /// The request's number on its connection, for the logs.
        seq: u64,
    },
}

impl Outgoing {
    /// Appends the reply line to `out`, once final.
    pub async fn settle_into(self, out: &mut Vec<u8>) {
        match self {
            Outgoing::Ready(bytes) => out.extend_from_slice(&bytes),
            Outgoing::Answer {
                id,
                answer,
                op,
                received,
                seq,
            } => {
                let outcome = answer.settle().await;
                if let Some(received) = received {
                    let code = outcome.as_ref().err().map(|error| error.code);
                    let elapsed = received.elapsed();
                    telemetry::request(Front::Unix, op, code, elapsed);
                    tracing::debug!(
                        request_id = %RequestLabel(id.as_deref(), seq),
                        op = op.label(),
                        code = code.map_or("ok", |code| code.as_str()),
                        micros = elapsed.as_micros() as u64,
                        "request"
                    );
                }
                match outcome {
                    Ok(reply) => ndjson::encode_ok(out, id.as_deref(), &reply),
                    Err(error) => ndjson::encode_error(out, id.as_deref(), &(&error).into()),
                }
            }
        }
    }
}

/// Parses the `seq`th request line of a connection, read at `received`, and submits it:
/// the reply to send, in order, and whether the request may have taken long (rendering,
/// reading the journal).
pub async fn handle(
    service: &Service,
    caller: &Caller,
    line: &[u8],
    received: Instant,
    seq: u64,
) -> (Outgoing, bool) {
    // Timing costs a clock read per request: only when metrics or debug logs want it.
    let timed = telemetry::enabled() || tracing::enabled!(tracing::Level::DEBUG);
    let received = timed.then_some(received);
    let incoming = ndjson::parse_line(line);
    match incoming.request {
        Ok(request) => {
            let id = incoming.id.map(ToOwned::to_owned);
            let op = Op::of(&request);
            let slow = matches!(&request, Request::Get(get) if get.generate)
                || matches!(&request, Request::Balance(balance) if balance.at.is_some())
                // A refund reads the charge and its refunds from the journal, as history does.
                || matches!(op, Op::History | Op::Audit | Op::Reload | Op::Refund);
            let answer = match tracing::enabled!(tracing::Level::DEBUG) {
                // Whatever the service logs about this request names it.
                true => {
                    let span = tracing::debug_span!(
                        "request",
                        request_id = %RequestLabel(id.as_deref(), seq)
                    );
                    service.submit(caller, request).instrument(span).await
                }
                false => service.submit(caller, request).await,
            };
            let outgoing = Outgoing::Answer {
                id,
                answer,
                op,
                received,
                seq,
            };
            (outgoing, slow)
        }
        Err(error) => {
            tracing::debug!(
                request_id = %RequestLabel(incoming.id, seq),
                code = error.code.as_str(),
                "request refused: {}",
                error.message
            );
            if let Some(received) = received {
                telemetry::request(Front::Unix, Op::Other, Some(error.code), received.elapsed());
            }
            let mut bytes = Vec::with_capacity(128);
            ndjson::encode_error(&mut bytes, incoming.id, &error);
            (Outgoing::Ready(bytes), false)
        }
    }
}

/// The complete reply line for one request line, once it is durable: what a connection
/// sends, in one call (for tests and fuzzing; connections pipeline instead).
pub async fn respond(service: &Service, caller: &Caller, line: &[u8]) -> Vec<u8> {
    let (outgoing, _) = handle(service, caller, line, Instant::now(), 0).await;
    let mut reply = Vec::new();
    outgoing.settle_into(&mut reply).await;
    reply
}

async fn read_requests(
    stream: &Stream,
    service: &Arc<Service>,
    caller: &Caller,
    limits: &Limits,
    shutdown: &CancellationToken,
    replies: &mpsc::Sender<Outgoing>,
) {
    let codec = AnyDelimiterCodec::new_with_max_length(b"\n".to_vec(), Vec::new(), MAX_LINE_BYTES);
    let mut lines = FramedRead::with_capacity(stream, codec, 16 * 1024);
    // One timer per connection, moved only when it fires: per-request timers cost more
    // than the requests.
    let idle = tokio::time::sleep(limits.idle_timeout);
    tokio::pin!(idle);
    let mut last_line = Instant::now();
    let mut seq = 0u64;
    loop {
        let next = tokio::select! {
            biased;
            () = shutdown.cancelled() => return,
            next = lines.next() => next,
            () = &mut idle => {
                let quiet_until = last_line + limits.idle_timeout;
                if Instant::now() < quiet_until {
                    idle.as_mut().reset(quiet_until);
                    continue;
                }
                tracing::debug!("closing a connection idle for {:?}", limits.idle_timeout);
                return;
            }
        };
        last_line = Instant::now();
        let line = match next {
            None => return,
            Some(Ok(line)) => line,
            Some(Err(AnyDelimiterCodecError::MaxChunkLengthExceeded)) => {
                let error = ErrorBody::new(
                    ErrorCode::LineTooLong,
                    format!(
                        "request lines are limited to {MAX_LINE_BYTES} bytes; closing the connection"
                    ),
                );
                let mut bytes = Vec::new();
                ndjson::encode_error(&mut bytes, None, &error);
                let _ = replies.send(Outgoing::Ready(bytes)).await;
                return;
            }
            Some(Err(AnyDelimiterCodecError::Io(error))) => {
                tracing::debug!("connection read failed: {error}");
                return;
            }
        };
        let line = line.strip_suffix(b"\r").unwrap_or(&line);
        if line.iter().all(u8::is_ascii_whitespace) {
            continue; // blank lines are not requests
        }
        seq += 1;
        let (outgoing, slow) = handle(service, caller, line, last_line, seq).await;
        if slow {
            // Time spent on our side (rendering, reading history) is not the client's
            // idleness.
            last_line = Instant::now();
        }
        if replies.send(outgoing).await.is_err() {
            return; // the writer gave up on this client
        }
    }
}

/// What a connection's reply buffer starts with: room for a few pipelined replies.
const REPLY_BUFFER: usize = 4096;

async fn write_replies(
    stream: Arc<Stream>,
    mut pending: mpsc::Receiver<Outgoing>,
    write_timeout: Duration,
) {
    let mut out = BufWriter::with_capacity(64 * 1024, &*stream);
    // A client that takes no reply bytes for `write_timeout` is cut off. The timer is re-armed
    // lazily (when less than half of it is left), not per reply.
    let stall = tokio::time::sleep(write_timeout);
    tokio::pin!(stall);
    // One buffer for every reply of the connection: encoding allocates nothing.
    let mut bytes = Vec::with_capacity(REPLY_BUFFER);
    while let Some(outgoing) = pending.recv().await {
        if bytes.capacity() > 16 * REPLY_BUFFER {
            // A large reply (a history page is megabytes) must not stay allocated for the
            // connection's life: thousands of idle connections would hold it each.
            bytes = Vec::with_capacity(REPLY_BUFFER);
        }
        bytes.clear();
        outgoing.settle_into(&mut bytes).await;
        let now = Instant::now();
        if stall.deadline() < now + write_timeout / 2 {
            stall.as_mut().reset(now + write_timeout);
        }
        // Flush when nothing else is ready, so pipelined replies share a write.
        let flush = pending.is_empty();
        let write = async {
            out.write_all(&bytes).await?;
            if flush {
                out.flush().await?;
            }
            std::io::Result::Ok(())
        };
        tokio::select! {
            written = write => if written.is_err() { return },
            () = &mut stall => {
                tracing::debug!("disconnecting a client that does not read its replies");
                return;
            }
        }
    }
    let _ = timeout(write_timeout, out.flush()).await;
}

/// Tells a client over the connection limit to come back later, and hangs up.
pub async fn refuse_busy(stream: Stream, max_connections: usize) {
    telemetry::connection_refused(Front::Unix);
    let error = ErrorBody::new(
        ErrorCode::Busy,
        format!("memesd is at its limit of {max_connections} connections; try again later"),
    );
    let mut bytes = Vec::new();
    ndjson::encode_error(&mut bytes, None, &error);
    let _ = timeout(Duration::from_secs(1), (&stream).write_all(&bytes)).await;
}
