//! The Unix socket front: accept connections, serve each in its own task, and shut down
//! cleanly.
//!
//! [`run`] takes its shutdown as a future, so the binary passes the SIGTERM/SIGINT future
//! and tests can pass anything. On shutdown it stops accepting, lets every connection finish
//! the requests it already read, and returns; the caller then flushes and checkpoints the
//! store and removes the socket.
//!
//! Sub-modules: [`connection`] runs one client; [`socket`] binds the socket safely. The
//! NDJSON wire is the protocol's ([`crate::protocol::ndjson`]), shared with the client.

pub mod connection;
pub mod socket;

use crate::service::Service;
use connection::Limits;
use interprocess::local_socket::tokio::Listener;
use interprocess::local_socket::traits::tokio::Listener as _;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// How long shutdown waits for connections to finish the requests they already read.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Serves `listener` until `shutdown` resolves, then drains connections.
pub async fn run(
    service: Arc<Service>,
    listener: &Listener,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
) {
    let stopping = CancellationToken::new();
    let connections = TaskTracker::new();
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => accepted,
        };
        let stream = match accepted {
            Ok(stream) => stream,
            Err(error) => {
                // Usually out of file descriptors: back off instead of spinning.
                tracing::warn!("accepting a connection failed: {error}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        match slots.clone().try_acquire_owned() {
            Ok(slot) => {
                let (service, stopping) = (service.clone(), stopping.clone());
                connections.spawn(async move {
                    connection::serve(stream, service, limits, stopping).await;
                    drop(slot);
                });
            }
            Err(_) => {
                connections.spawn(connection::refuse_busy(stream, limits.max_connections));
            }
        }
    }
    tracing::info!("shutting down: no new connections; finishing requests in flight");
    stopping.cancel();
    connections.close();
    if tokio::time::timeout(SHUTDOWN_GRACE, connections.wait())
        .await
        .is_err()
    {
        tracing::warn!("some connections were still busy after {SHUTDOWN_GRACE:?}; closing them");
    }
}
