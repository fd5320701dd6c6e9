//! memes: memes as a service.
//!
//! `memesd` owns per-user token balances (an auditable ledger) and a meme catalogue, and
//! serves them through its fronts; `memes` is the command-line client. This library holds
//! everything both binaries share. A request flows: front → [`service`] → [`store`].
//!
//! - [`domain`]: the shared vocabulary (tiers, entry kinds, outcome codes, account and
//!   history views, the audit report). Depends on nothing else here.
//! - [`protocol`]: the typed requests and replies every front speaks, and their limits.
//! - [`fronts`]: the ways in; [`fronts::unix`] is the Unix socket with its NDJSON framing.
//! - [`service`]: one call per request: access, rate limits, catalogue choice, premium,
//!   and charge-on-delivery.
//! - [`store`]: the token ledger behind an async trait. The rules of the money are in
//!   [`store::rules`], and nowhere else; [`store::file`] is the embedded journal store,
//!   [`store::pg`] the PostgreSQL store that several memesd hosts can share;
//!   [`store::spec`] opens the one `--store` names.
//! - [`catalogue`]: the memes, ranked search, selection, and where a coordinate is.
//! - [`premium`]: signed claims, and generated meme images.
//! - [`daemon`]: memesd's command line and wiring ([`daemon::build`], then
//!   [`daemon::serve`] on the listeners and shutdown future it is given); [`client`] and [`cli`]: the `memes`
//!   command line; [`paths`]: where the socket and the data live; [`lockfile`]: one daemon
//!   per data directory and socket; [`credentials`]: admin keys' format, for every front
//!   and the CLI.
//! - [`atomic_file`]: replacing a file atomically and durably (checkpoints, images);
//!   [`causes`]: an error and its causes as one line;
//!   [`telemetry`]: what memesd measures about itself, for Prometheus; [`progress`]: bars
//!   and spinners for long commands, on a terminal only; `man_pages` (feature
//!   `test-support`): the manual pages.

pub mod atomic_file;
pub mod catalogue;
pub mod causes;
pub mod cli;
pub mod client;
pub mod credentials;
pub mod daemon;
pub mod domain;
pub mod fronts;
pub mod lockfile;
#[cfg(feature = "test-support")]
pub mod man_pages;
pub mod paths;
pub mod premium;
pub mod progress;
pub mod protocol;
pub mod service;
pub mod store;
pub mod telemetry;
