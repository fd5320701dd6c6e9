//! Who is calling ([`Caller`]), and what they may do.
//!
//! On the Unix socket, anyone who can connect may `get`, `search`, read a `balance`,
//! `history` or `status`; changing balances or tiers, auditing and reloading are for admins:
//! the daemon's own uid, root, and the uids and groups named with `--admin-uid` /
//! `--admin-group`. Identity comes from the kernel (the socket peer's credentials,
//! `SO_PEERCRED`), never from anything the client says.
//!
//! Over the network a caller is who its credential says (see [`Principal`]): a user gets
//! memes for themselves and reads only their own balance and history; an admin key may do
//! everything; a payment provider's signed webhook may only top up. Anyone may search and
//! read the status.

use super::ServiceError;
use crate::protocol::{Callers, ErrorBody, Op, Request};
use nix::unistd::{Gid, Group, Uid, User};

/// Who a request comes from, as the front that received it established.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// A local process on the Unix socket, as the kernel identifies it.
    Local(Peer),
    /// A client over the network, as its credential identifies it.
    Remote(Principal),
}

/// A network caller, by the credential it presented (verified by the front).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// Nobody in particular: no credential was needed for what it asks.
    Anonymous,
    /// A user: a verified token's subject (premium if its claims say so), or, in
    /// development mode, the user id given as the bearer itself.
    User { id: String, premium: bool },
    /// An admin key, by the name it was given.
    Admin { name: String },
    /// A payment provider's webhook, by its verified signature.
    Webhook,
}

impl Caller {
    /// A name for the ledger's records of who changed a balance, when it is not the
    /// daemon's own admin on the socket.
    pub fn actor(&self) -> Option<String> {
        match self {
            Caller::Remote(Principal::Admin { name }) => Some(format!("admin key {name}")),
            Caller::Remote(Principal::Webhook) => Some("payment webhook".to_string()),
            _ => None,
        }
    }

    /// True when the caller's own credential makes its requests premium.
    pub fn premium_by_credential(&self) -> bool {
        matches!(self, Caller::Remote(Principal::User { premium: true, .. }))
    }
}

/// A request as admission reads it, whatever its op: which op it is, whether its fields are
/// within their limits, and the account it is about, if any (a user may ask about their own
/// only, and the rate limit counts per account). Every op's request type has it, and so has
/// [`Request`], which holds any of them.
pub trait Admitted {
    fn op(&self) -> Op;
    fn validate(&self) -> Result<(), ErrorBody>;
    fn subject(&self) -> Option<&str>;
}

/// Every request type's [`Admitted`], and [`Request`]'s (its op's, whichever it holds): the
/// op, the check and the subject are the protocol's, so an op added to the protocol needs
/// nothing here.
macro_rules! admitted {
    ($($name:literal => $variant:ident($body:ident) at $method:ident $path:literal for $callers:ident,)+) => {
        $(impl Admitted for crate::protocol::$body {
            fn op(&self) -> Op {
                Self::OP
            }
            fn validate(&self) -> Result<(), ErrorBody> {
                Self::validate(self)
            }
            fn subject(&self) -> Option<&str> {
                Self::subject(self)
            }
        })+

        impl Admitted for Request {
            fn op(&self) -> Op {
                Request::op(self)
            }
            fn validate(&self) -> Result<(), ErrorBody> {
                Request::validate(self)
            }
            fn subject(&self) -> Option<&str> {
                Request::subject(self)
            }
        }
    };
}
crate::protocol::for_each_op!(admitted);

/// Refuses a request its caller may not make.
pub fn authorize(
    policy: &AdminPolicy,
    caller: &Caller,
    request: &impl Admitted,
) -> Result<(), ServiceError> {
    let admin_only = request.op().callers() == Callers::Admins;
    match caller {
        Caller::Local(peer) => {
            if admin_only && !policy.is_admin(peer) {
                return Err(ServiceError::not_allowed(format!(
                    "{} is an admin operation (allowed: memesd's own user, root, --admin-uid, --admin-group)",
                    request.op()
                )));
            }
            Ok(())
        }
        Caller::Remote(Principal::Admin { .. }) => Ok(()),
        Caller::Remote(Principal::Webhook) => match request.op() {
            Op::Topup => Ok(()),
            other => Err(ServiceError::not_allowed(format!(
                "a payment webhook may only top up, not {other}"
            ))),
        },
        Caller::Remote(principal) => {
            if admin_only && *principal == Principal::Anonymous {
                return Err(ServiceError::new(
                    crate::domain::ErrorCode::Unauthorized,
                    format!(
                        "{} needs an admin key as the bearer credential",
                        request.op()
                    ),
                ));
            }
            if admin_only {
                return Err(ServiceError::not_allowed(format!(
                    "{} needs an admin key",
                    request.op()
                )));
            }
            match (principal, request.subject()) {
                (_, None) => Ok(()),
                (Principal::User { id, .. }, Some(user)) if id == user => Ok(()),
                (Principal::User { id, .. }, Some(user)) => Err(ServiceError::not_allowed(
                    format!("{id:?} may only ask for their own account, not {user:?}"),
                )),
                (_, Some(_)) => Err(ServiceError::new(
                    crate::domain::ErrorCode::Unauthorized,
                    "this needs a credential: a bearer token for the user",
                )),
            }
        }
    }
}

/// The kernel's word on who is on the other end of a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peer {
    pub uid: Option<u32>,
    pub gid: Option<u32>,
}

/// The admin policy.
#[derive(Debug, Clone, Default)]
pub struct AdminPolicy {
    /// The daemon's own uid (always an admin).
    pub owner: u32,
    pub uids: Vec<u32>,
    pub groups: Vec<Gid>,
}

impl AdminPolicy {
    /// The policy for a daemon running as the current user.
    pub fn for_current_user(uids: Vec<u32>, groups: Vec<Gid>) -> AdminPolicy {
        AdminPolicy {
            owner: Uid::current().as_raw(),
            uids,
            groups,
        }
    }

    /// True if `peer` may run admin operations.
    pub fn is_admin(&self, peer: &Peer) -> bool {
        let Some(uid) = peer.uid else {
            return false;
        };
        if uid == 0 || uid == self.owner || self.uids.contains(&uid) {
            return true;
        }
        if self.groups.is_empty() {
            return false;
        }
        if peer
            .gid
            .is_some_and(|gid| self.groups.iter().any(|g| g.as_raw() == gid))
        {
            return true;
        }
        // Supplementary groups: membership as the group database records it.
        let Ok(Some(user)) = User::from_uid(Uid::from_raw(uid)) else {
            return false;
        };
        self.groups.iter().any(|gid| {
            user.gid == *gid
                || Group::from_gid(*gid)
                    .ok()
                    .flatten()
                    .is_some_and(|group| group.mem.contains(&user.name))
        })
    }
}

/// Resolves a `--admin-group` value (a name or a numeric gid).
pub fn resolve_group(name: &str) -> Result<Gid, String> {
    if let Ok(raw) = name.parse::<u32>() {
        return Ok(Gid::from_raw(raw));
    }
    match Group::from_name(name) {
        Ok(Some(group)) => Ok(group.gid),
        Ok(None) => Err(format!("no group named {name:?}")),
        Err(e) => Err(format!("looking up group {name:?}: {e}")),
    }
}

/// Resolves a `--admin-uid` value (a user name or a numeric uid).
pub fn resolve_user(name: &str) -> Result<u32, String> {
    if let Ok(raw) = name.parse::<u32>() {
        return Ok(raw);
    }
    match User::from_name(name) {
        Ok(Some(user)) => Ok(user.uid.as_raw()),
        Ok(None) => Err(format!("no user named {name:?}")),
        Err(e) => Err(format!("looking up user {name:?}: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(uid: u32, gid: u32) -> Peer {
        Peer {
            uid: Some(uid),
            gid: Some(gid),
        }
    }

    #[test]
    fn owner_root_and_named_ids_are_admins_others_are_not() {
        let policy = AdminPolicy {
            owner: 1000,
            uids: vec![1001],
            groups: vec![Gid::from_raw(50)],
        };
        assert!(policy.is_admin(&peer(1000, 1000)));
        assert!(policy.is_admin(&peer(0, 0)));
        assert!(policy.is_admin(&peer(1001, 1001)));
        assert!(policy.is_admin(&peer(4242, 50)), "primary group named");
        assert!(!policy.is_admin(&peer(4242, 4242)));
        assert!(
            !policy.is_admin(&Peer {
                uid: None,
                gid: None
            }),
            "unknown peers are not trusted"
        );
    }
}
