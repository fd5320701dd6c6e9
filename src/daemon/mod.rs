//! memesd as a whole: its command line ([`config`]), the data directory's permissions
//! ([`datadir`]), and the wiring that opens the store, builds the service and runs the fronts
//! until shutdown.

pub mod config;
pub mod datadir;
