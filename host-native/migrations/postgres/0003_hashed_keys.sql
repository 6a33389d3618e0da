-- Keys that no accepted value can break (issue 13, row 10). A B-tree entry must fit in a third of a
-- page (~2.7 KB), and a lock's key — file handle, caller_name (1,024 bytes) and owner (caller_name
-- + svid + oh, 2,064 bytes) — did not: one such LOCK failed the whole group-commit batch, and every
-- other client's request in it. Now the unique keys are the SHA-256 of the length-prefixed key
-- columns (a stored generated column, so writers need not compute it), and the bytes stay in their
-- columns; the secondary indexes are on a hash too, or on a column intake bounds well below the
-- limit (file handles at most 128 bytes, caller_names at most 1,024).

ALTER TABLE lock_record ADD COLUMN record_key BYTEA GENERATED ALWAYS AS (sha256(
    int4send(length(file)) || file || int4send(length(client)) || client
    || int4send(length(owner)) || owner || int8send(range_offset))) STORED;
ALTER TABLE lock_record ADD COLUMN owner_key BYTEA GENERATED ALWAYS AS (sha256(
    int4send(length(client)) || client || owner)) STORED;
ALTER TABLE lock_record DROP CONSTRAINT lock_record_pkey;
ALTER TABLE lock_record ADD CONSTRAINT lock_record_pkey PRIMARY KEY (record_key);
DROP INDEX lock_record_by_owner;
CREATE INDEX lock_record_by_owner ON lock_record (owner_key);
CREATE INDEX lock_record_by_file ON lock_record (file);
CREATE INDEX lock_record_by_client ON lock_record (client);

ALTER TABLE share_record ADD COLUMN share_key BYTEA GENERATED ALWAYS AS (sha256(
    int4send(length(file)) || file || int4send(length(client)) || client || owner)) STORED;
ALTER TABLE share_record DROP CONSTRAINT share_record_pkey;
ALTER TABLE share_record ADD CONSTRAINT share_record_pkey PRIMARY KEY (share_key);
