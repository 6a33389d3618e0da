-- brlock store schema, PostgreSQL. See host-native/src/store/mod.rs for the encoding.
--
-- One row per lock record the core holds; the store key is (file, client, owner, offset) and a Put
-- replaces the row with that key. u64 values (offsets, lengths, epochs, sequence numbers) are stored
-- as the same 64 bits in a BIGINT: values >= 2^63 read back negative in SQL, and SQL only ever
-- compares them for equality.
CREATE TABLE lock_record (
    file         BYTEA    NOT NULL,
    client       BYTEA    NOT NULL,
    owner        BYTEA    NOT NULL,
    range_offset BIGINT   NOT NULL,
    range_length BIGINT   NOT NULL,
    -- 0 = shared, 1 = exclusive.
    kind         SMALLINT NOT NULL CONSTRAINT lock_record_kind_check CHECK (kind IN (0, 1)),
    -- The epoch and sequence number of the Persist action that wrote the row.
    epoch        BIGINT   NOT NULL,
    seq          BIGINT   NOT NULL,
    PRIMARY KEY (file, client, owner, range_offset)
);

-- The primary key serves lookups by file; this one serves lookups by client and by owner.
CREATE INDEX lock_record_by_owner ON lock_record (client, owner);

-- Exactly one row: the epoch of the instance allowed to write (fencing).
CREATE TABLE server (
    id    SMALLINT PRIMARY KEY CHECK (id = 1),
    epoch BIGINT   NOT NULL
);

INSERT INTO server (id, epoch) VALUES (1, 0);
