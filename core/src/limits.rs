//! Limits on held lock records (per file, per client, in total), counted after merging: a request that
//! would grow a count past its limit is refused whole, and nothing changes.

use crate::action::Limit;
use crate::state::{Core, FileKey};
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
}
