//! The leadership lease row on PostgreSQL (`leader_lease`, migration 0004): read it, take it, renew
//! it, give it up. This file only speaks SQL; when to take and when to stop serving is decided in
//! `crate::leader`, which also holds the argument why that is safe.
//!
//! Every change is a compare-and-set in one statement: a takeover succeeds only if (term, renewals)
//! are still what the standby saw, a renewal only if the term is still the leader's own. PostgreSQL
//! runs the two `UPDATE`s of one row one after the other, so of a renewal and a takeover racing
//! exactly one succeeds, and two standbys can never both take the same term over.
//!
//! The lease has a connection of its own, outside the store's pool: a renewal must never wait for a
//! connection behind a slow batch of lock writes. After any error (or a caller's time-out in the middle
//! of a statement) the connection is dropped and the next call opens a fresh one.

use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::{ConnectOptions, Connection, Row};

use super::StoreError;
use super::rows::{from_db, to_db};

/// The lease row as one read saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaseRow {
    /// Grows by one at every takeover: which leader's tenure this is.
    pub term: u64,
    /// Grows by one at every renewal (and at a release).
    pub renewals: u64,
    /// Who leads (`pid …, listening on …`); empty when nobody does.
    pub holder: String,
    /// The lease the holder promised to stop serving within, without a renewal.
    pub lease: Duration,
    /// When this term began, on the database's clock, as text (for logs only).
    pub since: String,
}

impl LeaseRow {
    /// Whether nobody leads: never led, or the leader stepped down.
    pub fn vacant(&self) -> bool {
        self.holder.is_empty()
    }
}

/// The lease of one PostgreSQL store.
pub struct PgLease {
    options: PgConnectOptions,
    conn: Option<PgConnection>,
}

impl PgLease {
    pub(super) fn new(options: PgConnectOptions) -> Self {
        PgLease {
            options,
            conn: None,
        }
    }

    /// Has the server give up any statement of this lease after `limit` (`statement_timeout`): a
    /// renewal stuck behind a lock must not commit long after its sender stopped waiting for it.
    /// Applies to connections made from now on.
    pub fn statement_timeout(&mut self, limit: Duration) {
        let ms = limit.as_millis().max(1).to_string();
        self.options = self
            .options
            .clone()
            .options([("statement_timeout", ms.as_str())]);
        self.conn = None;
    }

    /// Forgets the connection (after a time-out cut a statement short); the next call reconnects.
    pub fn reset(&mut self) {
        self.conn = None;
    }

    async fn conn(&mut self) -> Result<&mut PgConnection, StoreError> {
        if self.conn.is_none() {
            self.conn = Some(self.options.connect().await?);
        }
        Ok(self.conn.as_mut().expect("just connected"))
    }

    /// Runs `f` on the connection; an error drops the connection.
    async fn with<T>(
        &mut self,
        f: impl AsyncFnOnce(&mut PgConnection) -> Result<T, sqlx::Error>,
    ) -> Result<T, StoreError> {
        let conn = self.conn().await?;
        match f(conn).await {
            Ok(v) => Ok(v),
            Err(e) => {
                self.conn = None;
                Err(e.into())
            }
        }
    }

    pub async fn observe(&mut self) -> Result<LeaseRow, StoreError> {
        let row = self
            .with(async |c| {
                sqlx::query(
                    "SELECT term, renewals, holder, lease_ms, since::text FROM leader_lease \
                     WHERE id = 1",
                )
                .fetch_optional(c)
                .await
            })
            .await?
            .ok_or_else(|| StoreError::Corrupt("the leader_lease row is missing".into()))?;
        let lease_ms: i64 = row.try_get(3).map_err(StoreError::from)?;
        Ok(LeaseRow {
            term: from_db(row.try_get(0).map_err(StoreError::from)?),
            renewals: from_db(row.try_get(1).map_err(StoreError::from)?),
            holder: row.try_get(2).map_err(StoreError::from)?,
            lease: Duration::from_millis(u64::try_from(lease_ms).unwrap_or(0)),
            since: row.try_get(4).map_err(StoreError::from)?,
        })
    }

    /// Takes the lease over if it is still exactly `seen`: the new term, or `None` when someone
    /// renewed or took it meanwhile.
    pub async fn take(
        &mut self,
        seen: &LeaseRow,
        holder: &str,
        lease: Duration,
    ) -> Result<Option<u64>, StoreError> {
        let (term, renewals) = (to_db(seen.term), to_db(seen.renewals));
        let lease_ms = lease_ms(lease);
        let term: Option<i64> = self
            .with(async |c| {
                sqlx::query_scalar(
                    "UPDATE leader_lease SET term = term + 1, renewals = 0, holder = $1, \
                     lease_ms = $2, since = now(), renewed = now() \
                     WHERE id = 1 AND term = $3 AND renewals = $4 RETURNING term",
                )
                .bind(holder)
                .bind(lease_ms)
                .bind(term)
                .bind(renewals)
                .fetch_optional(c)
                .await
            })
            .await?;
        Ok(term.map(from_db))
    }

    /// Renews the lease of `term`: false when another instance has taken it over.
    pub async fn renew(&mut self, term: u64, lease: Duration) -> Result<bool, StoreError> {
        let lease_ms = lease_ms(lease);
        let done = self
            .with(async |c| {
                sqlx::query(
                    "UPDATE leader_lease SET renewals = renewals + 1, lease_ms = $2, \
                     renewed = now() WHERE id = 1 AND term = $1 AND holder <> ''",
                )
                .bind(to_db(term))
                .bind(lease_ms)
                .execute(c)
                .await
            })
            .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Gives the lease of `term` up (a clean stop), so that a standby takes over at once. Call only
    /// once this instance answers nothing any more.
    pub async fn release(&mut self, term: u64) -> Result<(), StoreError> {
        self.with(async |c| {
            sqlx::query(
                "UPDATE leader_lease SET holder = '', renewals = renewals + 1, renewed = now() \
                 WHERE id = 1 AND term = $1",
            )
            .bind(to_db(term))
            .execute(c)
            .await
        })
        .await?;
        if let Some(conn) = self.conn.take() {
            let _ = conn.close().await;
        }
        Ok(())
    }
}

fn lease_ms(lease: Duration) -> i64 {
    i64::try_from(lease.as_millis()).unwrap_or(i64::MAX)
}
