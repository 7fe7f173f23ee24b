//! Subscriptions of users and objects to objects.

use super::*;

const SUBSCRIPTION_COLUMNS: &str = "collection, object_id, recipient_collection, recipient_id, \
    properties, inserted_at, updated_at";

fn subscription_from_row(row: &DbRow) -> Result<SubscriptionRecord, StoreError> {
    const OP: &str = "read subscription";
    let properties: String = get(row, "properties", OP)?;
    let recipient_collection: String = get(row, "recipient_collection", OP)?;
    Ok(SubscriptionRecord {
        collection: get(row, "collection", OP)?,
        object_id: get(row, "object_id", OP)?,
        recipient: RecipientKey {
            collection: Some(recipient_collection).filter(|c| !c.is_empty()),
            id: get(row, "recipient_id", OP)?,
        },
        properties: parse_json(&properties, OP)?,
        inserted_at: get(row, "inserted_at", OP)?,
        updated_at: get(row, "updated_at", OP)?,
    })
}

fn collection_of(key: &RecipientKey) -> String {
    key.collection.clone().unwrap_or_default()
}

#[async_trait]
impl SubscriptionStore for SqlStore {
    async fn add_subscriptions(
        &self,
        environment_id: &str,
        collection: &str,
        object_id: &str,
        recipients: &[RecipientKey],
        properties: &Value,
        now: Millis,
    ) -> StoreResult<Vec<SubscriptionRecord>> {
        const OP: &str = "add subscriptions";
        let mut conn = self.writer.conn().await.map_err(StoreError::db("begin"))?;
        let mut tx = conn.begin().await.map_err(StoreError::db("begin"))?;
        let mut out = Vec::with_capacity(recipients.len());
        for r in recipients {
            let row = sqlx::query(&format!(
                "INSERT INTO subscriptions (environment_id, {SUBSCRIPTION_COLUMNS}) \
                 VALUES ($7, $1, $2, $3, $4, $5, $6, $6) \
                 ON CONFLICT (environment_id, collection, object_id, recipient_collection, recipient_id) \
                 DO UPDATE SET properties = excluded.properties, updated_at = excluded.updated_at \
                 RETURNING {SUBSCRIPTION_COLUMNS}"
            ))
            .bind(collection)
            .bind(object_id)
            .bind(collection_of(r))
            .bind(&r.id)
            .bind(to_json_text(properties))
            .bind(now)
            .bind(environment_id)
            .fetch_one(&mut *tx)
            .await
            .map_err(StoreError::db(OP))?;
            out.push(subscription_from_row(&row)?);
        }
        tx.commit().await.map_err(StoreError::db(OP))?;
        Ok(out)
    }

    async fn delete_subscriptions(
        &self,
        environment_id: &str,
        collection: &str,
        object_id: &str,
        recipients: &[RecipientKey],
    ) -> StoreResult<Vec<SubscriptionRecord>> {
        const OP: &str = "delete subscriptions";
        let mut conn = self.writer.conn().await.map_err(StoreError::db("begin"))?;
        let mut tx = conn.begin().await.map_err(StoreError::db("begin"))?;
        let mut out = Vec::new();
        for r in recipients {
            let row = sqlx::query(&format!(
                "DELETE FROM subscriptions WHERE environment_id = $1 AND collection = $2 AND object_id = $3 \
                 AND recipient_collection = $4 AND recipient_id = $5 RETURNING {SUBSCRIPTION_COLUMNS}"
            ))
            .bind(environment_id)
            .bind(collection)
            .bind(object_id)
            .bind(collection_of(r))
            .bind(&r.id)
            .fetch_optional(&mut *tx)
            .await
            .map_err(StoreError::db(OP))?;
            if let Some(row) = row {
                out.push(subscription_from_row(&row)?);
            }
        }
        tx.commit().await.map_err(StoreError::db(OP))?;
        Ok(out)
    }

    async fn object_subscriptions(
        &self,
        environment_id: &str,
        collection: &str,
        object_id: &str,
        after: Option<&RecipientKey>,
        limit: i64,
    ) -> StoreResult<Vec<SubscriptionRecord>> {
        let mut qb = QueryBuilder::<Db>::new(format!(
            "SELECT {SUBSCRIPTION_COLUMNS} FROM subscriptions WHERE environment_id = "
        ));
        qb.push_bind(environment_id.to_string());
        qb.push(" AND collection = ");
        qb.push_bind(collection.to_string());
        qb.push(" AND object_id = ");
        qb.push_bind(object_id.to_string());
        if let Some(a) = after {
            // A row-value comparison lets both databases seek the primary key instead of
            // rescanning every earlier subscriber on each page.
            qb.push(" AND (recipient_collection, recipient_id) > (");
            qb.push_bind(collection_of(a));
            qb.push(", ");
            qb.push_bind(a.id.clone());
            qb.push(")");
        }
        qb.push(" ORDER BY recipient_collection, recipient_id LIMIT ");
        qb.push_bind(limit);
        let rows = qb
            .build()
            .fetch_all(&mut *self.reader.acquire().await?)
            .await
            .map_err(StoreError::db("list object subscriptions"))?;
        rows.iter().map(subscription_from_row).collect()
    }

    async fn recipient_subscriptions(
        &self,
        environment_id: &str,
        recipient: &RecipientKey,
        after: Option<&(String, String)>,
        limit: i64,
    ) -> StoreResult<Vec<SubscriptionRecord>> {
        let mut qb = QueryBuilder::<Db>::new(format!(
            "SELECT {SUBSCRIPTION_COLUMNS} FROM subscriptions WHERE environment_id = "
        ));
        qb.push_bind(environment_id.to_string());
        qb.push(" AND recipient_collection = ");
        qb.push_bind(collection_of(recipient));
        qb.push(" AND recipient_id = ");
        qb.push_bind(recipient.id.clone());
        if let Some((c, id)) = after {
            qb.push(" AND (collection, object_id) > (");
            qb.push_bind(c.clone());
            qb.push(", ");
            qb.push_bind(id.clone());
            qb.push(")");
        }
        qb.push(" ORDER BY collection, object_id LIMIT ");
        qb.push_bind(limit);
        let rows = qb
            .build()
            .fetch_all(&mut *self.reader.acquire().await?)
            .await
            .map_err(StoreError::db("list recipient subscriptions"))?;
        rows.iter().map(subscription_from_row).collect()
    }
}
