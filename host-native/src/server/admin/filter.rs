//! Which rows a listing keeps ([`Filter`]) and how many ([`Capped`], at most [`MAX_LIMIT`]): a
//! listing stops collecting at its limit on the core task instead of building the whole table.

use brlock_core::{ClientId, Core, FileId, OwnerId};
use foldhash::{HashMap, HashMapExt};
use serde::Serialize;

use crate::server::request_log::owner_text;

/// The default `limit` of a listing, and the most one request may ask for.
pub const DEFAULT_LIMIT: usize = 10_000;
pub const MAX_LIMIT: usize = 100_000;

/// Which rows a listing keeps. Empty: all.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Filter {
    pub file: Option<FileId>,
    /// `caller_name/svid/oh`, or a prefix of it ending at a `/` (`host-a/42`: every oh of svid 42).
    pub owner: Option<String>,
    pub client: Option<ClientId>,
}

impl Filter {
    /// A matcher for one listing (it remembers each owner's answer: an owner's text is formatted
    /// once per listing, not once per lock).
    pub(super) fn matcher(&self) -> Matcher<'_> {
        Matcher {
            filter: self,
            owners: HashMap::new(),
        }
    }

    /// The files to look at, in name order: the one asked for, or all.
    pub(super) fn files(&self, core: &Core) -> Vec<FileId> {
        match &self.file {
            Some(file) => vec![file.clone()],
            None => core.files(),
        }
    }
}

/// A [`Filter`] applied to one listing.
pub(super) struct Matcher<'f> {
    filter: &'f Filter,
    owners: HashMap<OwnerId, bool>,
}

impl Matcher<'_> {
    pub(super) fn keeps(&mut self, client: &ClientId, owner: &OwnerId) -> bool {
        if self.filter.client.as_ref().is_some_and(|c| c != client) {
            return false;
        }
        let Some(wanted) = &self.filter.owner else {
            return true;
        };
        *self.owners.entry(owner.clone()).or_insert_with(|| {
            owner_text(owner)
                .strip_prefix(wanted.as_str())
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
        })
    }
}

/// At most `limit` rows, and whether more would have matched.
#[derive(Debug, PartialEq, Eq, Serialize)]
pub struct Capped<T> {
    pub rows: Vec<T>,
    pub truncated: bool,
}

impl<T> Capped<T> {
    /// The same listing with each row turned into `U`.
    pub fn map<U>(self, f: impl FnMut(T) -> U) -> Capped<U> {
        Capped {
            rows: self.rows.into_iter().map(f).collect(),
            truncated: self.truncated,
        }
    }

    pub(super) fn new() -> Self {
        Capped {
            rows: Vec::new(),
            truncated: false,
        }
    }

    /// Adds a row unless `limit` are there already (then marks the listing truncated). Returns
    /// whether to go on collecting.
    pub(super) fn offer(&mut self, limit: usize, row: impl FnOnce() -> T) -> bool {
        if self.rows.len() >= limit {
            self.truncated = true;
            return false;
        }
        self.rows.push(row());
        true
    }
}
