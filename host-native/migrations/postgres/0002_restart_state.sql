-- What a restart needs besides the lock records (issue 12). See host-native/src/store/mod.rs.

-- brlockd's own NSM state number (statd's /var/lib/nfs/state): odd, and 2 more at every start
-- (begin_epoch). Reboot notices carry it.
ALTER TABLE server ADD COLUMN nsm_state BIGINT NOT NULL DEFAULT 1;

-- One row per share reservation the core holds; the key is (file, client, owner) and a put replaces
-- the row. Modes: 0 none, 1 read, 2 write, 3 both.
CREATE TABLE share_record (
    file   BYTEA    NOT NULL,
    client BYTEA    NOT NULL,
    owner  BYTEA    NOT NULL,
    access SMALLINT NOT NULL CONSTRAINT share_record_access_check CHECK (access BETWEEN 0 AND 3),
    deny   SMALLINT NOT NULL CONSTRAINT share_record_deny_check CHECK (deny BETWEEN 0 AND 3),
    epoch  BIGINT   NOT NULL,
    seq    BIGINT   NOT NULL,
    PRIMARY KEY (file, client, owner)
);

-- The client hosts brlockd must tell about its restart (statd's /var/lib/nfs/sm), keyed by
-- caller_name: the address its calls come from (the binding: after a restart its locks and reclaims
-- are taken from there only), the address of ours they arrived at (the mon_name of the notice), and
-- whether it is monitored (the NSM state of its latest monitored LOCK; with --nsm statd, whether
-- SM_MON went to the local statd). Addresses are their text form, as bytes.
CREATE TABLE client_host (
    caller_name     BYTEA   NOT NULL PRIMARY KEY,
    address         BYTEA   NOT NULL,
    local_address   BYTEA   NOT NULL,
    monitored       BOOLEAN NOT NULL,
    nsm_state       BIGINT  NOT NULL,
    statd_monitored BOOLEAN NOT NULL
);
