//! memes: memes as a service.
//!
//! `memesd` owns per-user token balances (an auditable ledger on disk) and a meme
//! catalogue, and answers newline-delimited JSON requests on a Unix socket; `memes` is the
//! command-line client. This library holds everything both binaries share.
//!
//! - [`protocol`]: the wire contract (requests, replies, error codes, input limits).
//! - [`store`]: the token ledger: rules of the money, journal, checkpoints, recovery, audit.
//! - [`catalogue`]: the memes, ranked search, selection, and where a coordinate is.
//! - [`premium`]: entitlements, signed claims, and generated meme images.
//! - [`daemon`]: memesd's socket, connections, and request dispatch.
//! - [`client`]: a small synchronous client; [`cli`]: the `memes` command line.
//! - [`paths`]: where the socket and the data live (flag > environment > default).
//! - [`atomic_file`]: replacing a file atomically and durably (checkpoints, images).

pub mod atomic_file;
pub mod catalogue;
pub mod cli;
pub mod client;
pub mod daemon;
pub mod domain;
pub mod fronts;
pub mod lockfile;
pub mod paths;
pub mod premium;
pub mod protocol;
pub mod service;
pub mod store;
