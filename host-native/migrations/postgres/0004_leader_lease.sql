-- Leadership among the brlockd instances that share this database (issue 16); see
-- host-native/src/store/lease.rs and host-native/src/leader.rs. One row.
--
-- `term` grows by one at every takeover (it names a leader's tenure); `renewals` grows by one at every
-- renewal (it shows the leader lives). A standby never compares times written here: it takes over
-- once it has seen (term, renewals) stay the same for the leader's `lease_ms` plus a margin on its own
-- clock, and only if they are still what it saw (compare and set). `holder = ''` means nobody leads
-- (never led, or the leader stepped down cleanly): a standby takes over at once. `since` and
-- `renewed` are the database's clock, for people reading the row and for logs only.
CREATE TABLE leader_lease (
    id       SMALLINT    NOT NULL PRIMARY KEY CONSTRAINT leader_lease_one_row CHECK (id = 1),
    term     BIGINT      NOT NULL,
    renewals BIGINT      NOT NULL,
    holder   TEXT        NOT NULL,
    lease_ms BIGINT      NOT NULL,
    since    TIMESTAMPTZ NOT NULL,
    renewed  TIMESTAMPTZ NOT NULL
);

INSERT INTO leader_lease (id, term, renewals, holder, lease_ms, since, renewed)
VALUES (1, 0, 0, '', 0, now(), now());
