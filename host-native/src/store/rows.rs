//! How brlock's values sit in SQL columns, and rows read back into records: `u64`s as the same 64
//! bits in a signed column, lock kinds and share modes as small integers, addresses as text (the
//! store's module doc, "Rows"). A row the core could not have written is [`StoreError::Corrupt`].

use std::net::IpAddr;

use brlock_core::{ClientId, FileId, LockKind, LockRecord, OwnerId, Range, ShareMode, ShareRecord};

use super::{ClientHost, StoreError};

/// `SELECT` of a record's columns, in the order `record_from_row` takes them, plus a condition.
macro_rules! select {
    ($condition:literal) => {
        concat!(
            "SELECT file, client, owner, kind, range_offset, range_length FROM lock_record ",
            $condition
        )
    };
}

/// A `u64` as the signed 64-bit column holds it: the same bits.
pub(crate) fn to_db(v: u64) -> i64 {
    i64::from_ne_bytes(v.to_ne_bytes())
}

/// The inverse of [`to_db`].
pub(crate) fn from_db(v: i64) -> u64 {
    u64::from_ne_bytes(v.to_ne_bytes())
}

pub(crate) fn mode_to_db(mode: ShareMode) -> i16 {
    match mode {
        ShareMode::None => 0,
        ShareMode::Read => 1,
        ShareMode::Write => 2,
        ShareMode::Both => 3,
    }
}

pub(crate) fn mode_from_db(mode: i64, what: &str) -> Result<ShareMode, StoreError> {
    Ok(match mode {
        0 => ShareMode::None,
        1 => ShareMode::Read,
        2 => ShareMode::Write,
        3 => ShareMode::Both,
        m => {
            return Err(StoreError::Corrupt(format!(
                "{what} has share mode {m}, not 0 to 3"
            )));
        }
    })
}

/// Builds a share record from a row's columns.
pub(crate) fn share_from_row(
    file: Vec<u8>,
    client: Vec<u8>,
    owner: Vec<u8>,
    access: i64,
    deny: i64,
) -> Result<ShareRecord, StoreError> {
    let what = || {
        format!(
            "share record (file {}, client {}, owner {})",
            FileId::new(file.clone()),
            ClientId::new(client.clone()),
            OwnerId::new(owner.clone())
        )
    };
    let access = mode_from_db(access, &what())?;
    let deny = mode_from_db(deny, &what())?;
    Ok(ShareRecord {
        file: FileId::new(file),
        client: ClientId::new(client),
        owner: OwnerId::new(owner),
        access,
        deny,
    })
}

/// Builds a client host from a row's columns.
pub(crate) fn host_from_row(
    caller_name: Vec<u8>,
    address: &[u8],
    local_address: &[u8],
    monitored: bool,
    nsm_state: i64,
    statd_monitored: bool,
) -> Result<ClientHost, StoreError> {
    let ip = |bytes: &[u8]| {
        std::str::from_utf8(bytes)
            .ok()
            .and_then(|s| s.parse::<IpAddr>().ok())
            .ok_or_else(|| {
                StoreError::Corrupt(format!(
                    "client host {:?}: address {:?} is not an IP address",
                    String::from_utf8_lossy(&caller_name),
                    String::from_utf8_lossy(bytes)
                ))
            })
    };
    Ok(ClientHost {
        address: ip(address)?,
        local_address: ip(local_address)?,
        nsm_state: monitored.then_some(nsm_state as u32),
        statd_monitored,
        caller_name,
    })
}

pub(crate) fn kind_to_db(kind: LockKind) -> i16 {
    match kind {
        LockKind::Shared => 0,
        LockKind::Exclusive => 1,
    }
}

/// Builds a record from a row's columns, checking what the schema cannot.
pub(crate) fn record_from_row(
    file: Vec<u8>,
    client: Vec<u8>,
    owner: Vec<u8>,
    kind: i64,
    offset: i64,
    length: i64,
) -> Result<LockRecord, StoreError> {
    record_of(
        FileId::new(file),
        ClientId::new(client),
        OwnerId::new(owner),
        kind,
        offset,
        length,
    )
}

/// [`record_from_row`] with the ids already built (the SQLite loader shares one id per value).
pub(crate) fn record_of(
    file: FileId,
    client: ClientId,
    owner: OwnerId,
    kind: i64,
    offset: i64,
    length: i64,
) -> Result<LockRecord, StoreError> {
    let kind = match kind {
        0 => LockKind::Shared,
        1 => LockKind::Exclusive,
        k => {
            return Err(StoreError::Corrupt(format!(
                "lock record (file {file}, client {client}, owner {owner}, offset {}) has kind {k}, \
                 not 0 or 1",
                from_db(offset)
            )));
        }
    };
    Ok(LockRecord {
        file,
        client,
        owner,
        kind,
        range: Range::new(from_db(offset), from_db(length)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn u64_round_trips_through_the_signed_column() {
        for v in [0, 1, i64::MAX as u64, 1 << 63, u64::MAX - 1, u64::MAX] {
            assert_eq!(from_db(to_db(v)), v);
        }
        assert_eq!(to_db(u64::MAX), -1);
    }

    #[test]
    fn a_row_with_an_unknown_kind_is_corrupt() {
        let row = |kind| record_from_row(b"f".to_vec(), b"c".to_vec(), b"o".to_vec(), kind, 0, 0);
        assert_eq!(row(0).unwrap().kind, LockKind::Shared);
        assert_eq!(row(1).unwrap().kind, LockKind::Exclusive);
        assert!(matches!(row(2), Err(StoreError::Corrupt(m)) if m.contains("kind 2")));
        assert!(matches!(row(-1), Err(StoreError::Corrupt(_))));
    }
}
