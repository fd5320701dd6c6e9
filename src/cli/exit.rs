//! The CLI's exit codes: part of its interface, documented in `--help` and README, and
//! distinct per outcome so scripts can branch on them.

use crate::protocol::ErrorCode;
use std::process::ExitCode;

/// Exit codes of `memes`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Success = 0,
    /// Internal or protocol error; also an audit that found a discrepancy.
    Failure = 1,
    /// Invalid input: usage errors, `bad_request`, `invalid_argument`.
    Invalid = 2,
    /// memesd cannot be reached.
    Unreachable = 3,
    InsufficientTokens = 4,
    NotFound = 5,
    NotAllowed = 6,
    /// An idempotency key reused with different parameters.
    Conflict = 7,
    /// Try again later: rate limited, daemon busy, ledger unavailable.
    TryLater = 8,
    /// Degraded: memesd answers but cannot serve changes (`status` found the ledger not
    /// writable, e.g. a full disk). Reads still work.
    Degraded = 9,
}

/// The exit-code table shown at the end of `memes --help`.
pub const HELP: &str = "\
Exit codes:
  0  success
  1  internal or protocol error (also: `audit` found a discrepancy)
  2  invalid input (usage errors; bad_request, invalid_argument)
  3  memesd is unreachable
  4  insufficient tokens
  5  not found (unknown user; no meme matches the query)
  6  not allowed (admin-only operation, premium-only feature, rejected token)
  7  conflict (idempotency key reused with different parameters; a hold expired or ended)
  8  try again later (rate_limited, busy, unavailable)
  9  degraded: memesd answers but cannot serve changes (`status`: ledger not writable)";

impl Exit {
    /// The `error.code` that `--json` prints for a failure found by the CLI itself (for a
    /// refusal by memesd, its own code is printed). The CLI's own codes: `invalid_argument`
    /// (usage errors, invalid input), `unreachable` (no memesd answers), `write_failed` (an
    /// output file could not be written; set where that happens) and `internal`.
    pub fn code(self) -> &'static str {
        match self {
            Exit::Invalid => ErrorCode::InvalidArgument.as_str(),
            Exit::Unreachable => "unreachable",
            Exit::InsufficientTokens => ErrorCode::InsufficientTokens.as_str(),
            Exit::NotFound => ErrorCode::NotFound.as_str(),
            Exit::NotAllowed => ErrorCode::NotAllowed.as_str(),
            Exit::Conflict => ErrorCode::IdempotencyConflict.as_str(),
            Exit::TryLater | Exit::Degraded => ErrorCode::Unavailable.as_str(),
            Exit::Success | Exit::Failure => ErrorCode::Internal.as_str(),
        }
    }
}

impl From<ErrorCode> for Exit {
    fn from(code: ErrorCode) -> Exit {
        match code {
            ErrorCode::BadRequest | ErrorCode::InvalidArgument | ErrorCode::PayloadTooLarge => {
                Exit::Invalid
            }
            ErrorCode::InsufficientTokens => Exit::InsufficientTokens,
            ErrorCode::NotFound => Exit::NotFound,
            ErrorCode::NotAllowed | ErrorCode::Unauthorized => Exit::NotAllowed,
            ErrorCode::IdempotencyConflict | ErrorCode::HoldExpired | ErrorCode::HoldClosed => {
                Exit::Conflict
            }
            ErrorCode::RateLimited | ErrorCode::Busy | ErrorCode::Unavailable => Exit::TryLater,
            ErrorCode::UnknownOp | ErrorCode::LineTooLong | ErrorCode::Internal => Exit::Failure,
        }
    }
}

impl From<Exit> for ExitCode {
    fn from(exit: Exit) -> ExitCode {
        ExitCode::from(exit as u8)
    }
}
