//! Status callbacks: finding a message by its provider's id and applying what the
//! provider reported.

use super::*;

#[async_trait]
impl ProviderStatusStore for SqlStore {
    async fn message_by_provider_id(
        &self,
        channel_key: &str,
        provider_message_id: &str,
    ) -> StoreResult<Option<MessageRecord>> {
        let row = sqlx::query(&format!(
            "SELECT {MESSAGE_COLUMNS} FROM messages WHERE channel_key = $1 AND provider_message_id = $2"
        ))
        .bind(channel_key)
        .bind(provider_message_id)
        .fetch_optional(&mut *self.reader.acquire().await?)
        .await
        .map_err(StoreError::db("message by provider id"))?;
        row.as_ref().map(message_from_row).transpose()
    }

    async fn apply_provider_status(&self, update: &ProviderStatusUpdate) -> StoreResult<bool> {
        const OP: &str = "apply provider status";
        let mut conn = self.writer.conn().await.map_err(StoreError::db("begin"))?;
        let mut tx = conn.begin().await.map_err(StoreError::db("begin"))?;
        let row = sqlx::query(
            "UPDATE messages SET status = $1, updated_at = $2 WHERE id = $3 \
             AND status NOT IN ('bounced', 'undelivered', 'not_sent') AND status <> $1 \
             RETURNING environment_id, recipient_id",
        )
        .bind(&update.status)
        .bind(update.now)
        .bind(&update.message_id)
        .fetch_optional(&mut *tx)
        .await
        .map_err(StoreError::db(OP))?;
        let Some(row) = row else {
            return Ok(false);
        };
        let environment_id: String = get(&row, "environment_id", OP)?;
        let recipient_id: String = get(&row, "recipient_id", OP)?;
        let jobs_made_due = insert_message_event(
            &mut tx,
            &environment_id,
            &update.message_id,
            &recipient_id,
            &update.event_type,
            &update.event_data,
            update.now,
        )
        .await?;
        tx.commit().await.map_err(StoreError::db(OP))?;
        self.announce(AfterCommit {
            jobs_made_due,
            ..AfterCommit::default()
        });
        Ok(true)
    }
}
