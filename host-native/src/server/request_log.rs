//! The log lines about requests: a debug line as each NLM request is answered (procedure, caller,
//! owner, file, range, outcome, latency), and info lines for what an operator wants to see at the
//! default level — a grant after waiting, a deadlock, a refusal by a limit.
//!
//! A request's [`RequestSummary`] holds the core's own ids (cheap `Arc` clones taken from the
//! event); they are only formatted when a line is written.

use std::time::Duration;

use brlock_core::{ClientId, Event, FileId, Limit, LockKind, OwnerId, OwnerRef, Range};
use tracing::{debug, info};

use super::dispatch;
use super::intake::CallCtx;
use super::labels::proc_label;
use crate::nlm::{Lock, NlmCall, Share};

/// Who asked, about what.
#[derive(Clone, Debug)]
pub struct RequestSummary {
    pub client: ClientId,
    pub owner: OwnerId,
    pub file: FileId,
    /// None for share reservations (they cover the whole file).
    pub range: Option<Range>,
    pub kind: Option<LockKind>,
}

impl RequestSummary {
    /// The summary of a request the core is asked about.
    pub fn of_event(event: &Event) -> Option<Self> {
        let summary = |client: &ClientId, owner: &OwnerId, file: &FileId, range, kind| {
            Some(RequestSummary {
                client: client.clone(),
                owner: owner.clone(),
                file: file.clone(),
                range,
                kind,
            })
        };
        match event {
            Event::Lock {
                client,
                owner,
                file,
                range,
                kind,
                ..
            }
            | Event::Test {
                client,
                owner,
                file,
                range,
                kind,
                ..
            }
            | Event::Cancel {
                client,
                owner,
                file,
                range,
                kind,
                ..
            } => summary(client, owner, file, Some(*range), Some(*kind)),
            Event::Unlock {
                client,
                owner,
                file,
                range,
                ..
            } => summary(client, owner, file, Some(*range), None),
            Event::Share {
                client,
                owner,
                file,
                ..
            }
            | Event::Unshare {
                client,
                owner,
                file,
                ..
            } => summary(client, owner, file, None, None),
            _ => None,
        }
    }

    /// The summary of a call as it arrived (for calls refused before the core sees them).
    pub fn of_call(call: &NlmCall) -> Option<Self> {
        let lock = |l: &Lock, exclusive: Option<bool>| RequestSummary {
            client: ClientId::new(l.caller_name.clone()),
            owner: dispatch::owner_id(&l.caller_name, l.svid, &l.oh),
            file: FileId::new(l.fh.clone()),
            range: Some(dispatch::range(l.offset, l.len)),
            kind: exclusive.map(dispatch::kind),
        };
        let share = |s: &Share| RequestSummary {
            client: ClientId::new(s.caller_name.clone()),
            owner: dispatch::owner_id(&s.caller_name, 0, &s.oh),
            file: FileId::new(s.fh.clone()),
            range: None,
            kind: None,
        };
        match call {
            NlmCall::Test(a) | NlmCall::TestMsg(a) => Some(lock(&a.lock, Some(a.exclusive))),
            NlmCall::Lock(a) | NlmCall::LockMsg(a) | NlmCall::NmLock(a) => {
                Some(lock(&a.lock, Some(a.exclusive)))
            }
            NlmCall::Cancel(a) | NlmCall::CancelMsg(a) => Some(lock(&a.lock, Some(a.exclusive))),
            NlmCall::Unlock(a) | NlmCall::UnlockMsg(a) => Some(lock(&a.lock, None)),
            NlmCall::Share(a) | NlmCall::Unshare(a) => Some(share(&a.share)),
            _ => None,
        }
    }

    fn range_text(&self) -> String {
        self.range.map_or_else(|| "share".into(), |r| r.to_string())
    }

    fn kind_text(&self) -> &'static str {
        match self.kind {
            Some(LockKind::Exclusive) => "exclusive",
            Some(LockKind::Shared) => "shared",
            None => "-",
        }
    }
}

/// An NLM owner as `caller_name/svid/oh` (what `lslocks`-style listings show), else its bytes.
pub fn owner_text(owner: &OwnerId) -> String {
    match dispatch::parse_owner(owner) {
        Some((caller, svid, oh)) => {
            format!("{}/{svid}/{}", ClientId::new(caller), OwnerId::new(oh))
        }
        None => owner.to_string(),
    }
}

/// The debug line of a request answered with `status`.
pub fn answered(ctx: &CallCtx, status: &str) {
    let latency_us = ctx.received.elapsed().as_micros() as u64;
    let procedure = proc_label(ctx.procedure);
    match &ctx.what {
        Some(w) => debug!(
            procedure,
            version = ctx.version as u32,
            peer = %ctx.peer,
            caller = %w.client,
            owner = %owner_text(&w.owner),
            file = %w.file,
            range = %w.range_text(),
            kind = w.kind_text(),
            outcome = status,
            latency_us,
            "request"
        ),
        None => debug!(
            procedure,
            version = ctx.version as u32,
            peer = %ctx.peer,
            outcome = status,
            latency_us,
            "request"
        ),
    }
}

/// A queued request was granted (its GRANTED callback goes out now).
pub fn granted_after_wait(
    waiter: u64,
    client: &ClientId,
    owner: &OwnerId,
    file: &FileId,
    range: Range,
    waited: Option<Duration>,
) {
    let waited_ms = waited.map(|w| w.as_millis() as u64);
    info!(
        waiter,
        caller = %client,
        owner = %owner_text(owner),
        %file,
        %range,
        waited_ms,
        "granted after waiting"
    );
}

/// A LOCK refused because waiting would close a cycle.
pub fn deadlock(ctx: &CallCtx, cycle: &[OwnerRef]) {
    let cycle = cycle
        .iter()
        .map(|o| owner_text(&o.owner))
        .collect::<Vec<_>>()
        .join(" -> ");
    let what = ctx.what.as_ref();
    info!(
        peer = %ctx.peer,
        file = %what.map(|w| w.file.to_string()).unwrap_or_default(),
        range = %what.map(|w| w.range_text()).unwrap_or_default(),
        %cycle,
        "deadlock: LOCK refused (NLM4_DEADLCK)"
    );
}

/// A request refused by a configured limit.
pub fn limit_refusal(ctx: &CallCtx, limit: Limit) {
    let what = ctx.what.as_ref();
    let (setting, name) = match limit {
        Limit::PerFile => ("--max-locks-per-file", "per_file"),
        Limit::PerClient => ("--max-locks-per-client", "per_client"),
        Limit::Total => ("--max-locks-total", "total"),
        Limit::QueueLength => ("--max-waiters-per-file", "queue_length"),
        Limit::QueueShare => ("--max-queue-percent-per-client", "queue_share"),
        Limit::WaitersPerClient => ("--max-waiters-per-client", "waiters_per_client"),
        Limit::WaitersTotal => ("--max-waiters-total", "waiters_total"),
        Limit::SharesPerFile => ("--max-shares-per-file", "shares_per_file"),
        Limit::SharesPerClient => ("--max-shares-per-client", "shares_per_client"),
        Limit::SharesTotal => ("--max-shares-total", "shares_total"),
    };
    info!(
        procedure = proc_label(ctx.procedure),
        peer = %ctx.peer,
        caller = %what.map(|w| w.client.to_string()).unwrap_or_default(),
        file = %what.map(|w| w.file.to_string()).unwrap_or_default(),
        limit = name,
        setting,
        "refused by a limit (NLM4_DENIED_NOLOCKS)"
    );
}
