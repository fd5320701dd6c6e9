//! Integration tests: the real memesd on a temporary socket, driven through the real `memes`
//! binary and through raw NDJSON on the socket. Each test has its own daemon.

mod harness;

mod catalogue;
mod checkpoints;
mod cli;
mod console;
mod credits;
mod expirer;
mod failover;
mod faults;
mod flood;
mod history;
mod holds;
mod hostile;
mod http;
mod ledger;
mod lifecycle;
mod metrics;
mod money;
mod mounts;
mod multihost;
mod operations;
mod premium;
mod protocol;
mod proxy;
mod refunds;
mod release;
mod replicated;
mod semantic;
mod standby;
mod startup;
mod transfer;
