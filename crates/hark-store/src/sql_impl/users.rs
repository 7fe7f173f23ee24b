//! Users and bulk user operations.

use super::*;

/// Statements moving a merged user's rows (`$3`) to the surviving user (`$1`) in an
/// environment (`$2`). The user's messages, runs and message events move; an object that
/// shares the user's id keeps its own (a recipient is the pair of collection and id).
/// Events go first, found through the messages they belong to (their key) while those
/// still name the old id: events have no index by recipient, and a scan of them all
/// would hold the writer for as long as it takes.
pub(crate) const MERGE_RECIPIENT_ROWS: [&str; 3] = [
    "UPDATE message_events SET recipient_id = $1 WHERE message_id IN (SELECT id FROM messages \
     WHERE environment_id = $2 AND recipient_collection = '' AND recipient_id = $3)",
    "UPDATE messages SET recipient_id = $1 WHERE environment_id = $2 \
     AND recipient_collection = '' AND recipient_id = $3",
    "UPDATE recipient_runs SET recipient_id = $1 WHERE environment_id = $2 \
     AND recipient_collection = '' AND recipient_id = $3",
];

/// Deletes a user with its preference sets, channel data and subscriptions.
async fn delete_user_tx(tx: &mut Tx<'_>, environment_id: &str, id: &str) -> StoreResult<bool> {
    const OP: &str = "delete user";
    let deleted = sqlx::query("DELETE FROM users WHERE environment_id = $1 AND id = $2")
        .bind(environment_id)
        .bind(id)
        .execute(&mut **tx)
        .await
        .map_err(StoreError::db(OP))?;
    sqlx::query("DELETE FROM recipient_documents WHERE environment_id = $1 AND owner = $2")
        .bind(environment_id)
        .bind(Owner::User(id.to_string()).key())
        .execute(&mut **tx)
        .await
        .map_err(StoreError::db(OP))?;
    sqlx::query(
        "DELETE FROM subscriptions WHERE environment_id = $1 AND recipient_collection = '' AND recipient_id = $2",
    )
    .bind(environment_id)
    .bind(id)
    .execute(&mut **tx)
    .await
    .map_err(StoreError::db(OP))?;
    Ok(deleted.rows_affected() > 0)
}

#[async_trait]
impl UserStore for SqlStore {
    async fn upsert_user(
        &self,
        environment_id: &str,
        id: &str,
        properties: &Map<String, Value>,
        now: Millis,
    ) -> StoreResult<UserRecord> {
        let mut conn = self.writer.conn().await.map_err(StoreError::db("begin"))?;
        let mut tx = conn.begin().await.map_err(StoreError::db("begin"))?;
        let user = upsert_user_tx(&mut tx, environment_id, id, properties, now).await?;
        tx.commit()
            .await
            .map_err(StoreError::db("commit upsert user"))?;
        Ok(user)
    }

    async fn get_user(&self, environment_id: &str, id: &str) -> StoreResult<Option<UserRecord>> {
        let row = sqlx::query(
            "SELECT id, properties, inserted_at, updated_at FROM users WHERE environment_id = $1 AND id = $2",
        )
        .bind(environment_id)
        .bind(id)
        .fetch_optional(&mut *self.reader.acquire().await?)
        .await
        .map_err(StoreError::db("get user"))?;
        row.as_ref().map(user_from_row).transpose()
    }

    async fn get_users(
        &self,
        environment_id: &str,
        ids: &[String],
    ) -> StoreResult<Vec<UserRecord>> {
        self.read_by_ids(
            "SELECT id, properties, inserted_at, updated_at FROM users WHERE ",
            Some(environment_id),
            ids,
            user_from_row,
            "get users",
        )
        .await
    }

    async fn delete_user(&self, environment_id: &str, id: &str) -> StoreResult<bool> {
        let mut conn = self.writer.conn().await.map_err(StoreError::db("begin"))?;
        let mut tx = conn.begin().await.map_err(StoreError::db("begin"))?;
        let deleted = delete_user_tx(&mut tx, environment_id, id).await?;
        tx.commit()
            .await
            .map_err(StoreError::db("commit delete user"))?;
        Ok(deleted)
    }

    async fn list_users(
        &self,
        environment_id: &str,
        page: &PageRequest,
    ) -> StoreResult<Page<UserRecord>> {
        let size = page_size(page);
        let mut qb = QueryBuilder::<Db>::new(
            "SELECT id, properties, inserted_at, updated_at FROM users WHERE environment_id = ",
        );
        qb.push_bind(environment_id.to_string());
        let Some(backwards) = push_time_page(&mut qb, page, size) else {
            return Ok(empty_page());
        };
        let rows = qb
            .build()
            .fetch_all(&mut *self.reader.acquire().await?)
            .await
            .map_err(StoreError::db("list users"))?;
        let users = rows
            .iter()
            .map(user_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(finish_page(users, size, page, backwards, |u| {
            cursor::encode_pair(u.inserted_at, &u.id)
        }))
    }

    async fn merge_users(
        &self,
        environment_id: &str,
        id: &str,
        from_id: &str,
        now: Millis,
    ) -> StoreResult<Option<UserRecord>> {
        const OP: &str = "merge users";
        let mut conn = self.writer.conn().await.map_err(StoreError::db("begin"))?;
        let mut tx = conn.begin().await.map_err(StoreError::db("begin"))?;
        let mut users = Vec::new();
        for uid in [id, from_id] {
            let row = sqlx::query(
                "SELECT id, properties, inserted_at, updated_at FROM users WHERE environment_id = $1 AND id = $2",
            )
            .bind(environment_id)
            .bind(uid)
            .fetch_optional(&mut *tx)
            .await
            .map_err(StoreError::db(OP))?;
            match row {
                Some(row) => users.push(user_from_row(&row)?),
                None => return Ok(None),
            }
        }
        let mut merged = users[1].properties.clone();
        merge_properties(&mut merged, &users[0].properties);
        let user = upsert_user_tx(&mut tx, environment_id, id, &merged, now).await?;
        for sql in MERGE_RECIPIENT_ROWS {
            sqlx::query(sql)
                .bind(id)
                .bind(environment_id)
                .bind(from_id)
                .execute(&mut *tx)
                .await
                .map_err(StoreError::db(OP))?;
        }
        // Preference sets, channel data and subscriptions come along unless the surviving
        // user already has their own for the same key.
        let (to_owner, from_owner) = (
            Owner::User(id.to_string()).key(),
            Owner::User(from_id.to_string()).key(),
        );
        for (sql, to, from) in [
            (
                "UPDATE recipient_documents SET owner = $1 WHERE environment_id = $2 AND owner = $3 \
                 AND NOT EXISTS (SELECT 1 FROM recipient_documents d WHERE d.environment_id = $2 \
                 AND d.owner = $1 AND d.kind = recipient_documents.kind AND d.key = recipient_documents.key)",
                to_owner.as_str(),
                from_owner.as_str(),
            ),
            (
                "UPDATE subscriptions SET recipient_id = $1 WHERE environment_id = $2 \
                 AND recipient_collection = '' AND recipient_id = $3 AND NOT EXISTS \
                 (SELECT 1 FROM subscriptions s WHERE s.environment_id = $2 AND s.collection = subscriptions.collection \
                 AND s.object_id = subscriptions.object_id AND s.recipient_collection = '' AND s.recipient_id = $1)",
                id,
                from_id,
            ),
        ] {
            sqlx::query(sql)
                .bind(to)
                .bind(environment_id)
                .bind(from)
                .execute(&mut *tx)
                .await
                .map_err(StoreError::db(OP))?;
        }
        delete_user_tx(&mut tx, environment_id, from_id).await?;
        tx.commit().await.map_err(StoreError::db(OP))?;
        Ok(Some(user))
    }

    async fn bulk_identify(
        &self,
        environment_id: &str,
        users: &[(String, Map<String, Value>)],
        now: Millis,
    ) -> StoreResult<BulkOperation> {
        let mut conn = self.writer.conn().await.map_err(StoreError::db("begin"))?;
        let mut tx = conn.begin().await.map_err(StoreError::db("begin"))?;
        for (id, props) in users {
            upsert_user_tx(&mut tx, environment_id, id, props, now).await?;
        }
        let op = completed_bulk("users.identify", users.len() as i64, now);
        insert_bulk_operation(&mut tx, environment_id, &op).await?;
        tx.commit()
            .await
            .map_err(StoreError::db("commit bulk identify"))?;
        Ok(op)
    }

    async fn bulk_delete_users(
        &self,
        environment_id: &str,
        ids: &[String],
        now: Millis,
    ) -> StoreResult<BulkOperation> {
        let mut conn = self.writer.conn().await.map_err(StoreError::db("begin"))?;
        let mut tx = conn.begin().await.map_err(StoreError::db("begin"))?;
        for id in ids {
            delete_user_tx(&mut tx, environment_id, id).await?;
        }
        let op = completed_bulk("users.delete", ids.len() as i64, now);
        insert_bulk_operation(&mut tx, environment_id, &op).await?;
        tx.commit()
            .await
            .map_err(StoreError::db("commit bulk delete"))?;
        Ok(op)
    }

    async fn record_bulk_operation(
        &self,
        environment_id: &str,
        name: &str,
        rows: i64,
        now: Millis,
    ) -> StoreResult<BulkOperation> {
        let mut conn = self.writer.conn().await.map_err(StoreError::db("begin"))?;
        let mut tx = conn.begin().await.map_err(StoreError::db("begin"))?;
        let op = completed_bulk(name, rows, now);
        insert_bulk_operation(&mut tx, environment_id, &op).await?;
        tx.commit()
            .await
            .map_err(StoreError::db("commit bulk operation"))?;
        Ok(op)
    }

    async fn get_bulk_operation(
        &self,
        environment_id: &str,
        id: &str,
    ) -> StoreResult<Option<BulkOperation>> {
        let row =
            sqlx::query("SELECT * FROM bulk_operations WHERE environment_id = $1 AND id = $2")
                .bind(environment_id)
                .bind(id)
                .fetch_optional(&mut *self.reader.acquire().await?)
                .await
                .map_err(StoreError::db("get bulk operation"))?;
        row.as_ref().map(bulk_from_row).transpose()
    }
}
