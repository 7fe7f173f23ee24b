//! Audience definitions and static audience members.

use super::*;

fn member_from_row(row: &DbRow) -> Result<AudienceMember, StoreError> {
    const OP: &str = "read audience member";
    let tenant: String = get(row, "tenant", OP)?;
    Ok(AudienceMember {
        user_id: get(row, "user_id", OP)?,
        tenant: Some(tenant).filter(|t| !t.is_empty()),
        added_at: get(row, "added_at", OP)?,
    })
}

const AUDIENCE_COLUMNS: &str =
    "key, name, description, audience_type, segments, archived_at, created_at, updated_at";

fn audience_from_row(row: &DbRow) -> Result<AudienceDefinition, StoreError> {
    const OP: &str = "read audience";
    let segments: String = get(row, "segments", OP)?;
    Ok(AudienceDefinition {
        key: get(row, "key", OP)?,
        name: get(row, "name", OP)?,
        description: get(row, "description", OP)?,
        audience_type: get(row, "audience_type", OP)?,
        segments: parse_json(&segments, OP)?,
        archived_at: get(row, "archived_at", OP)?,
        created_at: get(row, "created_at", OP)?,
        updated_at: get(row, "updated_at", OP)?,
    })
}

#[async_trait]
impl AudienceStore for SqlStore {
    async fn add_audience_members(
        &self,
        environment_id: &str,
        audience_key: &str,
        members: &[(String, Option<String>)],
        now: Millis,
    ) -> StoreResult<()> {
        const OP: &str = "add audience members";
        let mut conn = self.writer.conn().await.map_err(StoreError::db("begin"))?;
        let mut tx = conn.begin().await.map_err(StoreError::db("begin"))?;
        for (user_id, tenant) in members {
            sqlx::query(
                "INSERT INTO audience_members (environment_id, audience_key, user_id, tenant, added_at) \
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
            )
            .bind(environment_id)
            .bind(audience_key)
            .bind(user_id)
            .bind(tenant.clone().unwrap_or_default())
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(StoreError::db(OP))?;
        }
        tx.commit().await.map_err(StoreError::db(OP))?;
        Ok(())
    }

    async fn remove_audience_members(
        &self,
        environment_id: &str,
        audience_key: &str,
        members: &[(String, Option<String>)],
    ) -> StoreResult<()> {
        const OP: &str = "remove audience members";
        let mut conn = self.writer.conn().await.map_err(StoreError::db("begin"))?;
        let mut tx = conn.begin().await.map_err(StoreError::db("begin"))?;
        for (user_id, tenant) in members {
            sqlx::query(
                "DELETE FROM audience_members WHERE environment_id = $1 AND audience_key = $2 \
                 AND user_id = $3 AND tenant = $4",
            )
            .bind(environment_id)
            .bind(audience_key)
            .bind(user_id)
            .bind(tenant.clone().unwrap_or_default())
            .execute(&mut *tx)
            .await
            .map_err(StoreError::db(OP))?;
        }
        tx.commit().await.map_err(StoreError::db(OP))?;
        Ok(())
    }

    async fn list_audience_members(
        &self,
        environment_id: &str,
        audience_key: &str,
        after: Option<&(Millis, String, String)>,
        limit: i64,
    ) -> StoreResult<Vec<AudienceMember>> {
        let mut qb = QueryBuilder::<Db>::new(
            "SELECT user_id, tenant, added_at FROM audience_members WHERE environment_id = ",
        );
        qb.push_bind(environment_id.to_string());
        qb.push(" AND audience_key = ");
        qb.push_bind(audience_key.to_string());
        if let Some((at, user, tenant)) = after {
            qb.push(" AND (added_at, user_id, tenant) > (");
            qb.push_bind(*at);
            qb.push(", ");
            qb.push_bind(user.clone());
            qb.push(", ");
            qb.push_bind(tenant.clone());
            qb.push(")");
        }
        qb.push(" ORDER BY added_at, user_id, tenant LIMIT ");
        qb.push_bind(limit);
        let rows = qb
            .build()
            .fetch_all(&mut *self.reader.acquire().await?)
            .await
            .map_err(StoreError::db("list audience members"))?;
        rows.iter().map(member_from_row).collect()
    }

    async fn audiences_of(
        &self,
        environment_id: &str,
        user_id: &str,
        tenant: Option<&str>,
    ) -> StoreResult<Vec<String>> {
        let rows = sqlx::query(
            "SELECT DISTINCT audience_key FROM audience_members WHERE environment_id = $1 \
             AND user_id = $2 AND (tenant = '' OR tenant = $3)",
        )
        .bind(environment_id)
        .bind(user_id)
        .bind(tenant.unwrap_or_default())
        .fetch_all(&mut *self.reader.acquire().await?)
        .await
        .map_err(StoreError::db("audiences of user"))?;
        rows.iter()
            .map(|row| get(row, "audience_key", "audiences of user"))
            .collect()
    }

    async fn upsert_audience(
        &self,
        environment_id: &str,
        audience: &AudienceDefinition,
        now: Millis,
    ) -> StoreResult<AudienceDefinition> {
        const OP: &str = "upsert audience";
        let row = sqlx::query(&format!(
            "INSERT INTO audiences (environment_id, key, name, description, audience_type, \
             segments, archived_at, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, NULL, $7, $7) \
             ON CONFLICT (environment_id, key) DO UPDATE SET name = excluded.name, \
             description = excluded.description, segments = excluded.segments, \
             archived_at = NULL, updated_at = excluded.updated_at \
             RETURNING {AUDIENCE_COLUMNS}"
        ))
        .bind(environment_id)
        .bind(&audience.key)
        .bind(&audience.name)
        .bind(&audience.description)
        .bind(&audience.audience_type)
        .bind(to_json_text(&audience.segments))
        .bind(now)
        .fetch_one(&mut *self.writer.acquire().await?)
        .await
        .map_err(StoreError::db(OP))?;
        audience_from_row(&row)
    }

    async fn get_audience(
        &self,
        environment_id: &str,
        key: &str,
    ) -> StoreResult<Option<AudienceDefinition>> {
        let row = sqlx::query(&format!(
            "SELECT {AUDIENCE_COLUMNS} FROM audiences WHERE environment_id = $1 AND key = $2"
        ))
        .bind(environment_id)
        .bind(key)
        .fetch_optional(&mut *self.reader.acquire().await?)
        .await
        .map_err(StoreError::db("get audience"))?;
        row.as_ref().map(audience_from_row).transpose()
    }

    async fn list_audiences(
        &self,
        environment_id: &str,
        after: Option<&str>,
        limit: i64,
    ) -> StoreResult<Vec<AudienceDefinition>> {
        let rows = sqlx::query(&format!(
            "SELECT {AUDIENCE_COLUMNS} FROM audiences WHERE environment_id = $1 \
             AND archived_at IS NULL AND key > $2 ORDER BY key LIMIT $3"
        ))
        .bind(environment_id)
        .bind(after.unwrap_or(""))
        .bind(limit)
        .fetch_all(&mut *self.reader.acquire().await?)
        .await
        .map_err(StoreError::db("list audiences"))?;
        rows.iter().map(audience_from_row).collect()
    }

    async fn archive_audience(
        &self,
        environment_id: &str,
        key: &str,
        now: Millis,
    ) -> StoreResult<bool> {
        let done = sqlx::query(
            "UPDATE audiences SET archived_at = $3, updated_at = $3 \
             WHERE environment_id = $1 AND key = $2 AND archived_at IS NULL",
        )
        .bind(environment_id)
        .bind(key)
        .bind(now)
        .execute(&mut *self.writer.acquire().await?)
        .await
        .map_err(StoreError::db("archive audience"))?;
        Ok(done.rows_affected() > 0)
    }

    async fn dynamic_audiences(
        &self,
        environment_id: &str,
    ) -> StoreResult<Vec<AudienceDefinition>> {
        let rows = sqlx::query(&format!(
            "SELECT {AUDIENCE_COLUMNS} FROM audiences WHERE environment_id = $1 \
             AND audience_type = 'dynamic' AND archived_at IS NULL ORDER BY key"
        ))
        .bind(environment_id)
        .fetch_all(&mut *self.reader.acquire().await?)
        .await
        .map_err(StoreError::db("list dynamic audiences"))?;
        rows.iter().map(audience_from_row).collect()
    }
}
