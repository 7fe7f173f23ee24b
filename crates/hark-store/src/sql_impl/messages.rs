//! Messages, feeds, engagement, events and delivery logs.

use super::feed_read::{feed_read_from_rows, feed_read_statement, FeedReadStatement};
use super::*;

/// A feed's badge counts, as `total`, `unread` and `unseen`.
pub(super) const FEED_COUNTS: &str = "COUNT(*) AS total, \
     COUNT(*) FILTER (WHERE read_at IS NULL) AS unread, \
     COUNT(*) FILTER (WHERE seen_at IS NULL) AS unseen";

#[async_trait]
impl MessageStore for SqlStore {
    async fn get_message(
        &self,
        environment_id: &str,
        id: &str,
    ) -> StoreResult<Option<MessageRecord>> {
        let row = sqlx::query(&format!(
            "SELECT {MESSAGE_COLUMNS} FROM messages WHERE environment_id = $1 AND id = $2"
        ))
        .bind(environment_id)
        .bind(id)
        .fetch_optional(&mut *self.reader.acquire().await?)
        .await
        .map_err(StoreError::db("get message"))?;
        row.as_ref().map(message_from_row).transpose()
    }

    async fn list_messages(
        &self,
        environment_id: &str,
        filter: &MessageFilter,
        page: &PageRequest,
    ) -> StoreResult<Page<MessageRecord>> {
        let size = page_size(page);
        let mut qb = QueryBuilder::<Db>::new(format!("SELECT {MESSAGE_COLUMNS} FROM messages"));
        let selection = push_message_filter(&mut qb, environment_id, filter);
        let Some(backwards) = push_id_page_by(&mut qb, page, size, selection.id()) else {
            return Ok(empty_page());
        };
        // A feed page names its terms as only `messages_feed` holds them (see
        // `FEED_ENVIRONMENT`), so the plan PostgreSQL keeps for any values reads one range
        // of that index, and the statement stays prepared. Any other selection is planned
        // anew with each call's values: a plan made while the table was small (or before
        // statistics) walked an index in id order past every row it did not select —
        // measured at 10 million rows read for 4,400 feed pages before feed pages had
        // terms of their own.
        let rows = qb
            .build()
            .persistent(selection == MessageSelection::Feed)
            .fetch_all(&mut *self.reader.acquire().await?)
            .await
            .map_err(StoreError::db("list messages"))?;
        let messages = rows
            .iter()
            .map(message_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(finish_page(messages, size, page, backwards, |m| {
            cursor::encode(&m.id)
        }))
    }

    async fn count_feed(
        &self,
        environment_id: &str,
        filter: &MessageFilter,
    ) -> StoreResult<FeedCounts> {
        const OP: &str = "count feed";
        let mut qb = QueryBuilder::<Db>::new(format!("SELECT {FEED_COUNTS} FROM messages"));
        push_message_filter(&mut qb, environment_id, filter);
        let row = qb
            .build()
            .fetch_one(&mut *self.reader.acquire().await?)
            .await
            .map_err(StoreError::db(OP))?;
        Ok(FeedCounts {
            total: get(&row, "total", OP)?,
            unread: get(&row, "unread", OP)?,
            unseen: get(&row, "unseen", OP)?,
        })
    }

    async fn read_feed(
        &self,
        environment_id: &str,
        filter: &MessageFilter,
        count_filter: &MessageFilter,
        page: &PageRequest,
        user_id: &str,
    ) -> StoreResult<FeedRead> {
        let FeedReadStatement { mut query, shape } =
            feed_read_statement(environment_id, filter, count_filter, page, user_id);
        let rows = query
            .build()
            // Kept prepared only for a feed page, for the reason `list_messages` gives.
            .persistent(shape.feed)
            .fetch_all(&mut *self.reader.acquire().await?)
            .await
            .map_err(StoreError::db("read feed"))?;
        feed_read_from_rows(&rows, &shape, page)
    }

    async fn set_engagement(
        &self,
        environment_id: &str,
        ids: &[String],
        change: Engagement,
        now: Millis,
    ) -> StoreResult<Vec<MessageRecord>> {
        const OP: &str = "set engagement";
        let (column, set) = change.column();
        let mut conn = self.writer.conn().await.map_err(StoreError::db("begin"))?;
        let mut tx = conn.begin().await.map_err(StoreError::db("begin"))?;
        let mut after = AfterCommit::default();
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            let sql = if set {
                format!(
                    "UPDATE messages SET {column} = $1, updated_at = $1 WHERE environment_id = $2 AND id = $3 \
                     RETURNING {MESSAGE_COLUMNS}"
                )
            } else {
                format!(
                    "UPDATE messages SET {column} = NULL, updated_at = $1 WHERE environment_id = $2 AND id = $3 \
                     AND {column} IS NOT NULL RETURNING {MESSAGE_COLUMNS}"
                )
            };
            let row = sqlx::query(&sql)
                .bind(now)
                .bind(environment_id)
                .bind(id)
                .fetch_optional(&mut *tx)
                .await
                .map_err(StoreError::db(OP))?;
            match row {
                Some(row) => {
                    let message = message_from_row(&row)?;
                    after.jobs_made_due |= insert_message_event(
                        &mut tx,
                        environment_id,
                        &message.id,
                        &message.recipient_id,
                        change.event_type(),
                        &Value::Null,
                        now,
                    )
                    .await?;
                    out.push(message);
                }
                None => {
                    // Unchanged (e.g. marking unread what was never read): report it as is.
                    let row = sqlx::query(&format!(
                        "SELECT {MESSAGE_COLUMNS} FROM messages WHERE environment_id = $1 AND id = $2"
                    ))
                    .bind(environment_id)
                    .bind(id)
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(StoreError::db(OP))?;
                    if let Some(row) = row {
                        out.push(message_from_row(&row)?);
                    }
                }
            }
        }
        tx.commit().await.map_err(StoreError::db(OP))?;
        self.announce(after);
        Ok(out)
    }

    async fn message_events(
        &self,
        environment_id: &str,
        message_id: &str,
        page: &PageRequest,
    ) -> StoreResult<Page<MessageEvent>> {
        const OP: &str = "message events";
        let rows = self
            .page_of_message_rows(
                "SELECT id, message_id, recipient_id, event_type, data, inserted_at FROM message_events",
                environment_id,
                message_id,
                page,
                OP,
            )
            .await?;
        let Some((rows, backwards)) = rows else {
            return Ok(empty_page());
        };
        let events = rows
            .iter()
            .map(|row| {
                let data: String = get(row, "data", OP)?;
                Ok(MessageEvent {
                    id: get(row, "id", OP)?,
                    message_id: get(row, "message_id", OP)?,
                    recipient_id: get(row, "recipient_id", OP)?,
                    event_type: get(row, "event_type", OP)?,
                    data: parse_json(&data, OP)?,
                    inserted_at: get(row, "inserted_at", OP)?,
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        Ok(finish_page(events, page_size(page), page, backwards, |e| {
            cursor::encode(&e.id)
        }))
    }

    async fn delivery_logs(
        &self,
        environment_id: &str,
        message_id: &str,
        page: &PageRequest,
    ) -> StoreResult<Page<DeliveryLog>> {
        const OP: &str = "delivery logs";
        let rows = self
            .page_of_message_rows(
                "SELECT id, environment_id, message_id, service_name, request, response, inserted_at \
                 FROM delivery_logs",
                environment_id,
                message_id,
                page,
                OP,
            )
            .await?;
        let Some((rows, backwards)) = rows else {
            return Ok(empty_page());
        };
        let logs = rows
            .iter()
            .map(|row| {
                let request: String = get(row, "request", OP)?;
                let response: String = get(row, "response", OP)?;
                Ok(DeliveryLog {
                    id: get(row, "id", OP)?,
                    environment_id: get(row, "environment_id", OP)?,
                    message_id: get(row, "message_id", OP)?,
                    service_name: get(row, "service_name", OP)?,
                    request: parse_json(&request, OP)?,
                    response: parse_json(&response, OP)?,
                    inserted_at: get(row, "inserted_at", OP)?,
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        Ok(finish_page(logs, page_size(page), page, backwards, |l| {
            cursor::encode(&l.id)
        }))
    }
}

impl SqlStore {
    /// Rows of a per-message table (events, delivery logs), newest first, one page plus
    /// one row to tell whether more follow. `None` for a malformed cursor.
    async fn page_of_message_rows(
        &self,
        select: &str,
        environment_id: &str,
        message_id: &str,
        page: &PageRequest,
        operation: &'static str,
    ) -> StoreResult<Option<(Vec<DbRow>, bool)>> {
        let mut qb = QueryBuilder::<Db>::new(select);
        qb.push(" WHERE environment_id = ");
        qb.push_bind(environment_id.to_string());
        qb.push(" AND message_id = ");
        qb.push_bind(message_id.to_string());
        let Some(backwards) = push_id_page(&mut qb, page, page_size(page)) else {
            return Ok(None);
        };
        let rows = qb
            .build()
            .fetch_all(&mut *self.reader.acquire().await?)
            .await
            .map_err(StoreError::db(operation))?;
        Ok(Some((rows, backwards)))
    }
}
