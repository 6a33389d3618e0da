-- What a restart needs besides the lock records (issue 12). See host-native/src/store/mod.rs.

-- brlockd's own NSM state number (statd's /var/lib/nfs/state): odd, and 2 more at every start
-- (begin_epoch). Reboot notices carry it.
ALTER TABLE server ADD COLUMN nsm_state INTEGER NOT NULL DEFAULT 1;

-- One row per share reservation the core holds; the key is (file, client, owner) and a put replaces
-- the row. Modes: 0 none, 1 read, 2 write, 3 both.
CREATE TABLE share_record (
    file   BLOB    NOT NULL,
    client BLOB    NOT NULL,
    owner  BLOB    NOT NULL,
    access INTEGER NOT NULL CHECK (access BETWEEN 0 AND 3),
    deny   INTEGER NOT NULL CHECK (deny BETWEEN 0 AND 3),
    epoch  INTEGER NOT NULL,
    seq    INTEGER NOT NULL,
    PRIMARY KEY (file, client, owner)
) WITHOUT ROWID;

-- The client hosts brlockd must tell about its restart (statd's /var/lib/nfs/sm), keyed by
-- caller_name: the address its calls come from (the binding: after a restart its locks and reclaims
-- are taken from there only), the address of ours they arrived at (the mon_name of the notice), and
-- whether it is monitored (the NSM state of its latest monitored LOCK; with --nsm statd, whether
-- SM_MON went to the local statd). Addresses are their text form, as bytes.
CREATE TABLE client_host (
    caller_name     BLOB    NOT NULL PRIMARY KEY,
    address         BLOB    NOT NULL,
    local_address   BLOB    NOT NULL,
    monitored       INTEGER NOT NULL CHECK (monitored IN (0, 1)),
    nsm_state       INTEGER NOT NULL,
    statd_monitored INTEGER NOT NULL CHECK (statd_monitored IN (0, 1))
) WITHOUT ROWID;
