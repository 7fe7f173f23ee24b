//! The connection writes go through.
//!
//! On PostgreSQL every write takes a connection from the pool. SQLite has one writer
//! connection, and going through its pool cost two extra hand-offs to the connection's
//! thread per transaction: the pool pings a connection it gets back, and the next caller
//! is woken only after that. With group commit those hand-offs were about a third of a
//! trigger batch's time. So the writer connection is taken out of the pool once and
//! handed from caller to caller under a fair lock; the pool stays only to open a
//! replacement when a connection has to be discarded.
//!
//! On PostgreSQL the writer shares [`Connections`] with reads.

use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use sqlx::pool::PoolConnection;
use tokio::sync::{MappedMutexGuard, Mutex, MutexGuard};

use super::connections::{Conn, Connections};
use super::*;

type Connection = <Db as sqlx::Database>::Connection;

pub(crate) struct Writer {
    connections: Arc<Connections>,
    /// The one connection every write uses, when the database has a single writer.
    held: Option<Mutex<Option<PoolConnection<Db>>>>,
    /// Set, under the lock, when the held connection must not be used again.
    discard_held: AtomicBool,
}

/// A writer connection, for one transaction or statement.
pub(crate) enum WriterConn<'a> {
    Held(MappedMutexGuard<'a, PoolConnection<Db>>),
    Pooled(Conn<'a>),
}

impl Writer {
    /// `single`: keep one connection for every write (SQLite) instead of taking one from
    /// the pool each time.
    pub(super) fn new(connections: Arc<Connections>, single: bool) -> Self {
        Writer {
            connections,
            held: single.then(|| Mutex::new(None)),
            discard_held: AtomicBool::new(false),
        }
    }

    /// Waits for the writer connection (its turn at the held one, or one from the pool).
    pub(crate) async fn conn(&self) -> Result<WriterConn<'_>, sqlx::Error> {
        let Some(slot) = &self.held else {
            return Ok(WriterConn::Pooled(self.connections.conn().await?));
        };
        let mut held = slot.lock().await;
        if self.discard_held.swap(false, Ordering::SeqCst) {
            if let Some(connection) = held.take() {
                // Closed, not returned: the pool opens a fresh one below.
                drop(connection.detach());
            }
        }
        if held.is_none() {
            *held = Some(self.connections.pool().acquire().await?);
        }
        MutexGuard::try_map(held, Option::as_mut)
            .map(WriterConn::Held)
            .map_err(|_| sqlx::Error::PoolClosed)
    }

    /// [`Writer::conn`], failing with the store's error.
    pub(crate) async fn acquire(&self) -> StoreResult<WriterConn<'_>> {
        self.conn().await.map_err(StoreError::db("acquire writer"))
    }

    /// Closes `conn` instead of letting anyone use it again (its session settings may be
    /// wrong); the next caller gets a fresh connection.
    pub(crate) fn discard(&self, conn: WriterConn<'_>) {
        match conn {
            WriterConn::Held(guard) => {
                // Set before the lock is released, so the next holder sees it.
                self.discard_held.store(true, Ordering::SeqCst);
                drop(guard);
            }
            WriterConn::Pooled(connection) => connection.discard(),
        }
    }
}

impl WriterConn<'_> {
    /// A transaction on this connection; it ends before the connection is handed on.
    pub(super) async fn begin(&mut self) -> Result<Tx<'_>, sqlx::Error> {
        sqlx::Connection::begin(&mut **self).await
    }
}

impl Deref for WriterConn<'_> {
    type Target = Connection;

    fn deref(&self) -> &Connection {
        match self {
            WriterConn::Held(guard) => guard,
            WriterConn::Pooled(connection) => connection,
        }
    }
}

impl DerefMut for WriterConn<'_> {
    fn deref_mut(&mut self) -> &mut Connection {
        match self {
            WriterConn::Held(guard) => guard,
            WriterConn::Pooled(connection) => connection,
        }
    }
}
