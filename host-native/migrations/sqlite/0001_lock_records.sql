-- brlock store schema, SQLite. See host-native/src/store/mod.rs for the encoding.
--
-- One row per lock record the core holds; the store key is (file, client, owner, offset) and a Put
-- replaces the row with that key. u64 values (offsets, lengths, epochs, sequence numbers) are stored
-- as the same 64 bits in an INTEGER: values >= 2^63 read back negative in SQL, and SQL only ever
-- compares them for equality.
CREATE TABLE lock_record (
    file         BLOB    NOT NULL,
    client       BLOB    NOT NULL,
    owner        BLOB    NOT NULL,
    range_offset INTEGER NOT NULL,
    range_length INTEGER NOT NULL,
    -- 0 = shared, 1 = exclusive.
    kind         INTEGER NOT NULL CHECK (kind IN (0, 1)),
    -- The epoch and sequence number of the Persist action that wrote the row.
    epoch        INTEGER NOT NULL,
    seq          INTEGER NOT NULL,
    PRIMARY KEY (file, client, owner, range_offset)
) WITHOUT ROWID;

-- The primary key serves lookups by file; this one serves lookups by client and by owner.
CREATE INDEX lock_record_by_owner ON lock_record (client, owner);

-- Exactly one row: the epoch of the instance allowed to write (fencing).
CREATE TABLE server (
    id    INTEGER PRIMARY KEY CHECK (id = 1),
    epoch INTEGER NOT NULL
);

INSERT INTO server (id, epoch) VALUES (1, 0);
