//! memes: memes as a service.
//!
//! `memesd` owns per-user token balances (an auditable ledger on disk) and a meme
//! catalogue, and answers newline-delimited JSON requests on a Unix socket; `memes` is the
//! command-line client. This library holds everything both binaries share.
//!
//! - [`protocol`]: the wire contract (requests, replies, error codes, input limits).
//! - [`store`]: the token ledger: rules of the money, journal, checkpoints, recovery, audit.
//! - [`paths`]: where the socket and the data live (flag > environment > default).
//! - [`client`]: a small synchronous client.

pub mod paths;
pub mod protocol;
pub mod store;
