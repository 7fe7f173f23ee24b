//! Static audience members.

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
        let mut tx = self.writer.begin().await.map_err(StoreError::db("begin"))?;
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
        let mut tx = self.writer.begin().await.map_err(StoreError::db("begin"))?;
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
            .fetch_all(&self.reader)
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
        .fetch_all(&self.reader)
        .await
        .map_err(StoreError::db("audiences of user"))?;
        rows.iter()
            .map(|row| get(row, "audience_key", "audiences of user"))
            .collect()
    }
}
