//! Every table the clients can grow has a limit: held lock records (per file, per client, in total,
//! counted after merging), waiters (per file, a client's share of a file's queue, per client, in
//! total) and share reservations (per file, per client, in total). A request that would grow a count
//! past its limit is refused whole (`Outcome::NoLocks` naming the limit), and nothing changes.

use crate::action::Limit;
use crate::state::{ClientKey, Core, FileKey};
use crate::table::OwnerKey;

impl Core {
    /// The first limit that growing `owner`'s records in `file` by `delta` would exceed.
    pub(crate) fn limit_refuses(
        &self,
        file: FileKey,
        owner: OwnerKey,
        delta: i64,
    ) -> Option<Limit> {
        if delta <= 0 {
            return None;
        }
        let delta = delta as u64;
        let limits = &self.config.limits;
        let client = self.clients.get(self.owners.get(owner).client);
        if self.files.get(file).locks.len() as u64 + delta > limits.locks_per_file {
            Some(Limit::PerFile)
        } else if client.locks + delta > limits.locks_per_client {
            Some(Limit::PerClient)
        } else if self.total_locks + delta > limits.locks_total {
            Some(Limit::Total)
        } else {
            None
        }
    }

    /// The first limit a new waiter of `owner` in `file` would exceed.
    pub(crate) fn waiter_limit_refuses(&self, file: FileKey, owner: OwnerKey) -> Option<Limit> {
        let limits = &self.config.limits;
        let queue = &self.files.get(file).queue;
        let ck = self.owners.get(owner).client;
        if queue.len() as u64 >= limits.waiters_per_file {
            return Some(Limit::QueueLength);
        }
        // Counted only when it could matter: a scan of a queue at most `waiters_per_file` long.
        let share = limits.client_queue_share();
        if queue.len() as u64 >= share {
            let mine = queue
                .values()
                .filter(|w| self.owners.get(w.owner).client == ck)
                .count() as u64;
            if mine >= share {
                return Some(Limit::QueueShare);
            }
        }
        if self.clients.get(ck).waiters >= limits.waiters_per_client {
            Some(Limit::WaitersPerClient)
        } else if self.waiters.len() as u64 >= limits.waiters_total {
            Some(Limit::WaitersTotal)
        } else {
            None
        }
    }

    /// The first limit one more share reservation in `file` (None: a file the core does not know) of
    /// client `client` (None: unknown) would exceed.
    pub(crate) fn share_limit_refuses(
        &self,
        file: Option<FileKey>,
        client: Option<ClientKey>,
    ) -> Option<Limit> {
        let limits = &self.config.limits;
        let in_file = file.map_or(0, |fk| self.files.get(fk).shares.len() as u64);
        let of_client = client.map_or(0, |ck| self.clients.get(ck).shares);
        if in_file >= limits.shares_per_file {
            Some(Limit::SharesPerFile)
        } else if of_client >= limits.shares_per_client {
            Some(Limit::SharesPerClient)
        } else if self.total_shares >= limits.shares_total {
            Some(Limit::SharesTotal)
        } else {
            None
        }
    }
}
