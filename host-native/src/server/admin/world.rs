//! A core the admin tests send lock requests to.

use brlock_core::{ClientId, Core, Event, FileId, LockKind, Profile, Range, RequestId};

use crate::server::dispatch::owner_id;

/// Each request is one ms after the one before (the first at 2).
pub(super) struct World {
    pub(super) core: Core,
    next: u64,
}

impl World {
    pub(super) fn new() -> Self {
        World {
            core: Core::new(Profile::Brlock.config()),
            next: 1,
        }
    }

    pub(super) fn lock(
        &mut self,
        caller: &str,
        svid: u32,
        fh: &[u8],
        offset: u64,
        len: u64,
        wait: bool,
    ) {
        self.next += 1;
        self.core.step(
            brlock_core::Instant::from_millis(self.next),
            Event::Lock {
                request: RequestId(self.next),
                client: ClientId::from(caller),
                owner: owner_id(caller.as_bytes(), svid, b"oh"),
                file: FileId::from(fh),
                range: Range::new(offset, len),
                kind: LockKind::Exclusive,
                wait,
                reclaim: false,
                cookie: Vec::new(),
            },
        );
    }
}
