//! Share reservations (NLM_SHARE/UNSHARE, SMB share modes): whole-file, independent of byte ranges.
//! A new share is refused when what it uses meets what another owner denies, or what it denies meets
//! what another owner uses. One owner has at most one share per file; a second replaces the first.
//!
//! The rules only: `grace.rs` wraps them to persist every change (`PutShare`/`DeleteShare` before
//! the reply) and to restore shares into the grace period, where only their owner reclaims them.

use alloc::vec::Vec;

use crate::action::{Action, Outcome};
use crate::event::ShareMode;
use crate::ids::{ClientId, FileId, OwnerId, RequestId};
use crate::state::{Core, FileKey};
use crate::table::OwnerKey;

impl Core {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn share(
        &mut self,
        request: RequestId,
        client: &ClientId,
        owner: &OwnerId,
        file: &FileId,
        (access, deny): (ShareMode, ShareMode),
        reclaim: bool,
        out: &mut Vec<Action>,
    ) {
        if self.in_grace() != reclaim && !(reclaim && self.config.late_reclaim) {
            return self.reply(request, Outcome::DeniedGrace, false, out);
        }
        let ok = self.lookup_owner(client, owner);
        if let Some(fk) = self.files.lookup(file) {
            let conflict =
                self.files
                    .get(fk)
                    .shares
                    .iter()
                    .find(|&(&other, &(their_access, their_deny))| {
                        Some(other) != ok && (access.meets(their_deny) || deny.meets(their_access))
                    });
            if let Some((&other, _)) = conflict {
                let owner = self.owner_ref(other);
                return self.reply(request, Outcome::ShareDenied { owner }, false, out);
            }
        }
        let known_file = self.files.lookup(file);
        let replaces = known_file
            .zip(ok)
            .is_some_and(|(fk, ok)| self.files.get(fk).shares.contains_key(&ok));
        if !replaces
            && let Some(limit) = self.share_limit_refuses(known_file, self.clients.lookup(client))
        {
            return self.reply(request, Outcome::NoLocks { limit }, false, out);
        }
        let fk = self.files.intern(file, Default::default);
        let (ck, ok) = self.intern_owner(client, owner);
        self.files.get_mut(fk).shares.insert(ok, (access, deny));
        self.owners.get_mut(ok).rare_mut().shares.insert(fk);
        if !replaces {
            self.clients.get_mut(ck).shares += 1;
            self.total_shares += 1;
        }
        self.reply(request, Outcome::Granted, false, out);
    }

    pub(crate) fn unshare(
        &mut self,
        request: RequestId,
        client: &ClientId,
        owner: &OwnerId,
        file: &FileId,
        out: &mut Vec<Action>,
    ) {
        if self.in_grace() && !self.config.unlock_in_grace {
            return self.reply(request, Outcome::DeniedGrace, false, out);
        }
        if let (Some(fk), Some(ok)) = (self.files.lookup(file), self.lookup_owner(client, owner)) {
            self.drop_share(fk, ok);
            self.tidy(Some(fk), Some(ok));
        }
        self.reply(request, Outcome::Granted, false, out);
    }

    /// Removes `owner`'s share of `file`, if it has one, keeping the counts in step.
    pub(crate) fn drop_share(&mut self, fk: FileKey, ok: OwnerKey) {
        if self.files.get_mut(fk).shares.remove(&ok).is_none() {
            return;
        }
        let owner = self.owners.get_mut(ok);
        owner.rare_mut().shares.remove(&fk);
        let ck = owner.client;
        self.clients.get_mut(ck).shares -= 1;
        self.total_shares -= 1;
    }
}
