//! Objects (tenants included) and per-recipient documents.

use super::*;

const OBJECT_COLUMNS: &str = "collection, id, properties, inserted_at, updated_at";

fn object_from_row(row: &DbRow) -> Result<ObjectRecord, StoreError> {
    const OP: &str = "read object";
    let properties: String = get(row, "properties", OP)?;
    Ok(ObjectRecord {
        collection: get(row, "collection", OP)?,
        id: get(row, "id", OP)?,
        properties: match parse_json(&properties, OP)? {
            Value::Object(map) => map,
            _ => Map::new(),
        },
        inserted_at: get(row, "inserted_at", OP)?,
        updated_at: get(row, "updated_at", OP)?,
    })
}

pub(super) async fn upsert_object_tx(
    tx: &mut Tx<'_>,
    environment_id: &str,
    collection: &str,
    id: &str,
    properties: &Map<String, Value>,
    now: Millis,
) -> StoreResult<ObjectRecord> {
    let (properties, inserted_at) = upsert_properties(
        tx,
        "objects",
        environment_id,
        &[("collection", collection), ("id", id)],
        properties,
        now,
    )
    .await?;
    Ok(ObjectRecord {
        collection: collection.to_string(),
        id: id.to_string(),
        properties,
        inserted_at,
        updated_at: now,
    })
}

async fn delete_object_tx(
    tx: &mut Tx<'_>,
    environment_id: &str,
    collection: &str,
    id: &str,
) -> StoreResult<bool> {
    const OP: &str = "delete object";
    let deleted = sqlx::query(
        "DELETE FROM objects WHERE environment_id = $1 AND collection = $2 AND id = $3",
    )
    .bind(environment_id)
    .bind(collection)
    .bind(id)
    .execute(&mut **tx)
    .await
    .map_err(StoreError::db(OP))?;
    let owner = Owner::Object {
        collection: collection.to_string(),
        id: id.to_string(),
    };
    sqlx::query("DELETE FROM recipient_documents WHERE environment_id = $1 AND owner = $2")
        .bind(environment_id)
        .bind(owner.key())
        .execute(&mut **tx)
        .await
        .map_err(StoreError::db(OP))?;
    Ok(deleted.rows_affected() > 0)
}

#[async_trait]
impl ObjectStore for SqlStore {
    async fn upsert_object(
        &self,
        environment_id: &str,
        collection: &str,
        id: &str,
        properties: &Map<String, Value>,
        now: Millis,
    ) -> StoreResult<ObjectRecord> {
        let mut conn = self.writer.conn().await.map_err(StoreError::db("begin"))?;
        let mut tx = conn.begin().await.map_err(StoreError::db("begin"))?;
        let object =
            upsert_object_tx(&mut tx, environment_id, collection, id, properties, now).await?;
        tx.commit()
            .await
            .map_err(StoreError::db("commit upsert object"))?;
        Ok(object)
    }

    async fn get_object(
        &self,
        environment_id: &str,
        collection: &str,
        id: &str,
    ) -> StoreResult<Option<ObjectRecord>> {
        let row = sqlx::query(&format!(
            "SELECT {OBJECT_COLUMNS} FROM objects WHERE environment_id = $1 AND collection = $2 AND id = $3"
        ))
        .bind(environment_id)
        .bind(collection)
        .bind(id)
        .fetch_optional(&mut *self.reader.acquire().await?)
        .await
        .map_err(StoreError::db("get object"))?;
        row.as_ref().map(object_from_row).transpose()
    }

    async fn delete_object(
        &self,
        environment_id: &str,
        collection: &str,
        id: &str,
    ) -> StoreResult<bool> {
        let mut conn = self.writer.conn().await.map_err(StoreError::db("begin"))?;
        let mut tx = conn.begin().await.map_err(StoreError::db("begin"))?;
        let deleted = delete_object_tx(&mut tx, environment_id, collection, id).await?;
        tx.commit()
            .await
            .map_err(StoreError::db("commit delete object"))?;
        Ok(deleted)
    }

    async fn list_objects(
        &self,
        environment_id: &str,
        collection: &str,
        page: &PageRequest,
    ) -> StoreResult<Page<ObjectRecord>> {
        let size = page_size(page);
        let mut qb = QueryBuilder::<Db>::new(format!(
            "SELECT {OBJECT_COLUMNS} FROM objects WHERE environment_id = "
        ));
        qb.push_bind(environment_id.to_string());
        qb.push(" AND collection = ");
        qb.push_bind(collection.to_string());
        let Some(backwards) = push_time_page(&mut qb, page, size) else {
            return Ok(empty_page());
        };
        let rows = qb
            .build()
            .fetch_all(&mut *self.reader.acquire().await?)
            .await
            .map_err(StoreError::db("list objects"))?;
        let objects = rows
            .iter()
            .map(object_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(finish_page(objects, size, page, backwards, |o| {
            cursor::encode_pair(o.inserted_at, &o.id)
        }))
    }

    async fn bulk_set_objects(
        &self,
        environment_id: &str,
        collection: &str,
        objects: &[(String, Map<String, Value>)],
        now: Millis,
    ) -> StoreResult<BulkOperation> {
        let mut conn = self.writer.conn().await.map_err(StoreError::db("begin"))?;
        let mut tx = conn.begin().await.map_err(StoreError::db("begin"))?;
        for (id, props) in objects {
            upsert_object_tx(&mut tx, environment_id, collection, id, props, now).await?;
        }
        let name = if collection == TENANTS_COLLECTION {
            "tenants.set".to_string()
        } else {
            format!("objects.{collection}.set")
        };
        let op = completed_bulk(&name, objects.len() as i64, now);
        insert_bulk_operation(&mut tx, environment_id, &op).await?;
        tx.commit()
            .await
            .map_err(StoreError::db("commit bulk set objects"))?;
        Ok(op)
    }

    async fn bulk_delete_objects(
        &self,
        environment_id: &str,
        collection: &str,
        ids: &[String],
        now: Millis,
    ) -> StoreResult<BulkOperation> {
        let mut conn = self.writer.conn().await.map_err(StoreError::db("begin"))?;
        let mut tx = conn.begin().await.map_err(StoreError::db("begin"))?;
        for id in ids {
            delete_object_tx(&mut tx, environment_id, collection, id).await?;
        }
        let name = if collection == TENANTS_COLLECTION {
            "tenants.delete".to_string()
        } else {
            format!("objects.{collection}.delete")
        };
        let op = completed_bulk(&name, ids.len() as i64, now);
        insert_bulk_operation(&mut tx, environment_id, &op).await?;
        tx.commit()
            .await
            .map_err(StoreError::db("commit bulk delete objects"))?;
        Ok(op)
    }
}

/// Inserts or replaces one document inside a caller's transaction (a trigger's inline
/// preferences are written with its runs).
pub(super) async fn put_document_tx(
    tx: &mut Tx<'_>,
    environment_id: &str,
    owner: &Owner,
    kind: DocumentKind,
    key: &str,
    data: &Value,
    now: Millis,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO recipient_documents (environment_id, owner, kind, key, data, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (environment_id, owner, kind, key) \
         DO UPDATE SET data = excluded.data, updated_at = excluded.updated_at",
    )
    .bind(environment_id)
    .bind(owner.key())
    .bind(kind.as_str())
    .bind(key)
    .bind(to_json_text(data))
    .bind(now)
    .execute(&mut **tx)
    .await
    .map_err(StoreError::db("put document"))?;
    Ok(())
}

fn document_from_row(row: &DbRow) -> Result<Document, StoreError> {
    const OP: &str = "read document";
    let data: String = get(row, "data", OP)?;
    Ok(Document {
        key: get(row, "key", OP)?,
        data: parse_json(&data, OP)?,
        updated_at: get(row, "updated_at", OP)?,
    })
}

#[async_trait]
impl DocumentStore for SqlStore {
    async fn get_document(
        &self,
        environment_id: &str,
        owner: &Owner,
        kind: DocumentKind,
        key: &str,
    ) -> StoreResult<Option<Document>> {
        let row = sqlx::query(
            "SELECT key, data, updated_at FROM recipient_documents \
             WHERE environment_id = $1 AND owner = $2 AND kind = $3 AND key = $4",
        )
        .bind(environment_id)
        .bind(owner.key())
        .bind(kind.as_str())
        .bind(key)
        .fetch_optional(&mut *self.reader.acquire().await?)
        .await
        .map_err(StoreError::db("get document"))?;
        row.as_ref().map(document_from_row).transpose()
    }

    async fn list_documents(
        &self,
        environment_id: &str,
        owner: &Owner,
        kind: DocumentKind,
    ) -> StoreResult<Vec<Document>> {
        let rows = sqlx::query(
            "SELECT key, data, updated_at FROM recipient_documents \
             WHERE environment_id = $1 AND owner = $2 AND kind = $3 ORDER BY key",
        )
        .bind(environment_id)
        .bind(owner.key())
        .bind(kind.as_str())
        .fetch_all(&mut *self.reader.acquire().await?)
        .await
        .map_err(StoreError::db("list documents"))?;
        rows.iter().map(document_from_row).collect()
    }

    async fn put_document(
        &self,
        environment_id: &str,
        owner: &Owner,
        kind: DocumentKind,
        key: &str,
        data: &Value,
        now: Millis,
    ) -> StoreResult<Document> {
        let mut conn = self.writer.conn().await.map_err(StoreError::db("begin"))?;
        let mut tx = conn.begin().await.map_err(StoreError::db("begin"))?;
        put_document_tx(&mut tx, environment_id, owner, kind, key, data, now).await?;
        tx.commit()
            .await
            .map_err(StoreError::db("commit put document"))?;
        Ok(Document {
            key: key.to_string(),
            data: data.clone(),
            updated_at: now,
        })
    }

    async fn delete_document(
        &self,
        environment_id: &str,
        owner: &Owner,
        kind: DocumentKind,
        key: &str,
    ) -> StoreResult<bool> {
        let done = sqlx::query(
            "DELETE FROM recipient_documents WHERE environment_id = $1 AND owner = $2 AND kind = $3 AND key = $4",
        )
        .bind(environment_id)
        .bind(owner.key())
        .bind(kind.as_str())
        .bind(key)
        .execute(&mut *self.writer.acquire().await?)
        .await
        .map_err(StoreError::db("delete document"))?;
        Ok(done.rows_affected() > 0)
    }

    async fn list_documents_of(
        &self,
        environment_id: &str,
        owners: &[Owner],
        kind: DocumentKind,
    ) -> StoreResult<Vec<(String, Document)>> {
        if owners.is_empty() {
            return Ok(Vec::new());
        }
        let mut qb = select_documents_of(
            environment_id,
            owners.iter().map(Owner::key).collect(),
            kind.as_str(),
        );
        let rows = qb
            .build()
            .fetch_all(&mut *self.reader.acquire().await?)
            .await
            .map_err(StoreError::db("list documents of owners"))?;
        rows.iter()
            .map(|row| {
                let owner: String = get(row, "owner", "read document owner")?;
                Ok((owner, document_from_row(row)?))
            })
            .collect()
    }

    async fn bulk_put_documents(
        &self,
        environment_id: &str,
        owners: &[Owner],
        kind: DocumentKind,
        key: &str,
        data: &Value,
        bulk_name: &str,
        now: Millis,
    ) -> StoreResult<BulkOperation> {
        let mut conn = self.writer.conn().await.map_err(StoreError::db("begin"))?;
        let mut tx = conn.begin().await.map_err(StoreError::db("begin"))?;
        for owner in owners {
            put_document_tx(&mut tx, environment_id, owner, kind, key, data, now).await?;
        }
        let op = completed_bulk(bulk_name, owners.len() as i64, now);
        insert_bulk_operation(&mut tx, environment_id, &op).await?;
        tx.commit()
            .await
            .map_err(StoreError::db("commit bulk put documents"))?;
        Ok(op)
    }
}

/// The documents of `kind` that `owners` (keys) hold, ordered by owner and key. Each
/// owner is its own probe of the key (environment, owner, kind): a plan for any owners
/// that PostgreSQL made while the table was small read the environment's whole range
/// for the kind instead.
pub(crate) fn select_documents_of(
    environment_id: &str,
    owners: Vec<String>,
    kind: &'static str,
) -> QueryBuilder<'static, Db> {
    let mut qb = QueryBuilder::<Db>::new("SELECT * FROM (");
    qb.push_select_per_key(owners, "owner", |qb| {
        qb.push(
            "SELECT owner, key, data, updated_at FROM recipient_documents WHERE environment_id = ",
        );
        qb.push_bind(environment_id.to_string());
        qb.push(" AND kind = ");
        qb.push_bind(kind);
        qb.push(" AND ");
    });
    qb.push(") AS documents ORDER BY owner, key");
    qb
}
