//! memesd as a whole: its command line ([`config`]), and the wiring that opens the store,
//! builds the service and runs the fronts until shutdown.

pub mod config;
