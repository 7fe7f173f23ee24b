//! Pooled connections handed from user to user without the pool's check in between.
//!
//! sqlx's pool pings every connection it gets back before anyone may take it again. On
//! SQLite that ping is a hand-off to the connection's thread and back (about 150 µs on a
//! busy machine); on PostgreSQL it is a round trip to the server, whose process shares the
//! machine's cores. Either way it came after every statement that did not run in a
//! transaction of its own, and after every transaction: a feed page is three reads, a
//! trigger's path through the engine a dozen checkouts. `Connections` keeps the
//! connections it took out of the pool and hands them on directly. Each still goes back
//! through the pool's check once it has been out for [`RECHECK_AFTER`], or at once when it
//! is handed back inside a transaction (an abandoned one), so a connection that broke is
//! closed by the pool soon after.

use std::ops::{Deref, DerefMut};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use sqlx::pool::PoolConnection;
use tokio::sync::{Semaphore, SemaphorePermit};

use super::*;

type Connection = <Db as sqlx::Database>::Connection;

/// How long a kept connection is reused before it goes back through the pool's check.
const RECHECK_AFTER: Duration = Duration::from_secs(1);

pub(crate) struct Connections {
    pool: Pool<Db>,
    kept: Option<Kept>,
}

/// Connections kept out of the pool. At most `permits` are in use at once and no more are
/// ever taken from the pool (one is taken only when none is idle), so the pool's other
/// users (listeners, notifications) always find room, and taking one from the pool never
/// waits for a connection that went back to `idle` instead.
struct Kept {
    permits: Semaphore,
    idle: Mutex<Vec<(PoolConnection<Db>, Instant)>>,
}

/// A connection for one statement or transaction.
pub(crate) struct Conn<'a> {
    connection: Option<PoolConnection<Db>>,
    /// When the connection last came out of the pool.
    taken: Instant,
    kept: Option<(&'a Kept, SemaphorePermit<'a>)>,
}

impl Connections {
    /// `keep`: hand up to this many connections on directly instead of through the pool;
    /// it must leave room in the pool for its other users.
    pub(super) fn new(pool: Pool<Db>, keep: Option<usize>) -> Self {
        Connections {
            pool,
            kept: keep.map(|size| Kept {
                permits: Semaphore::new(size.max(1)),
                idle: Mutex::new(Vec::new()),
            }),
        }
    }

    pub(super) fn pool(&self) -> &Pool<Db> {
        &self.pool
    }

    /// Waits for a connection.
    pub(crate) async fn conn(&self) -> Result<Conn<'_>, sqlx::Error> {
        let Some(kept) = &self.kept else {
            return Ok(Conn {
                connection: Some(self.pool.acquire().await?),
                taken: Instant::now(),
                kept: None,
            });
        };
        let permit = kept
            .permits
            .acquire()
            .await
            .map_err(|_| sqlx::Error::PoolClosed)?;
        let idle = kept.idle.lock().ok().and_then(|mut idle| idle.pop());
        let (connection, taken) = match idle {
            Some(found) => found,
            None => (self.pool.acquire().await?, Instant::now()),
        };
        Ok(Conn {
            connection: Some(connection),
            taken,
            kept: Some((kept, permit)),
        })
    }

    /// [`Connections::conn`], failing with the store's error.
    pub(crate) async fn acquire(&self) -> StoreResult<Conn<'_>> {
        self.conn()
            .await
            .map_err(StoreError::db("acquire connection"))
    }
}

impl Conn<'_> {
    /// A transaction on this connection; it ends before the connection is handed on.
    pub(super) async fn begin(&mut self) -> Result<Tx<'_>, sqlx::Error> {
        sqlx::Connection::begin(&mut **self).await
    }

    /// Closes the connection instead of handing it on (its session state may be wrong).
    pub(super) fn discard(mut self) {
        if let Some(connection) = self.connection.take() {
            drop(connection.detach());
        }
    }
}

impl Drop for Conn<'_> {
    fn drop(&mut self) {
        let Some(connection) = self.connection.take() else {
            return;
        };
        let Some((kept, _permit)) = &self.kept else {
            // Back to the pool, which checks it.
            return;
        };
        if self.taken.elapsed() >= RECHECK_AFTER
            || sqlx::Connection::is_in_transaction(&*connection)
        {
            // Back through the pool's check; the permit is released right after.
            drop(connection);
            return;
        }
        if let Ok(mut idle) = kept.idle.lock() {
            idle.push((connection, self.taken));
        }
    }
}

impl Deref for Conn<'_> {
    type Target = Connection;

    fn deref(&self) -> &Connection {
        match &self.connection {
            Some(connection) => connection,
            None => unreachable!("a connection is taken out of its guard only when dropped"),
        }
    }
}

impl DerefMut for Conn<'_> {
    fn deref_mut(&mut self) -> &mut Connection {
        match &mut self.connection {
            Some(connection) => connection,
            None => unreachable!("a connection is taken out of its guard only when dropped"),
        }
    }
}
