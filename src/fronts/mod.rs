//! The ways in to the service. A front parses its wire format into a typed request and a
//! [`crate::service::Caller`], calls the service, and encodes the result; it holds no rule
//! of the money. [`unix`] serves newline-delimited JSON on a Unix socket.

pub mod http;
pub mod unix;
