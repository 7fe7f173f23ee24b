//! Workflow drafts and committed versions.

use super::*;

#[async_trait]
impl WorkflowStore for SqlStore {
    async fn save_workflow(
        &self,
        environment_id: &str,
        key: &str,
        definition: &Value,
        commit: bool,
        now: Millis,
    ) -> StoreResult<WorkflowRecord> {
        const OP: &str = "save workflow";
        let mut conn = self.writer.conn().await.map_err(StoreError::db("begin"))?;
        let mut tx = conn.begin().await.map_err(StoreError::db("begin"))?;
        sqlx::query(
            "INSERT INTO workflows (environment_id, key, active, draft, committed_version, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, NULL, $5, $5) \
             ON CONFLICT (environment_id, key) DO UPDATE SET draft = excluded.draft, updated_at = excluded.updated_at",
        )
        .bind(environment_id)
        .bind(key)
        .bind(true)
        .bind(to_json_text(definition))
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(StoreError::db(OP))?;
        if commit {
            let row = sqlx::query(
                "SELECT COALESCE(MAX(version), 0) AS v FROM workflow_versions WHERE environment_id = $1 AND key = $2",
            )
            .bind(environment_id)
            .bind(key)
            .fetch_one(&mut *tx)
            .await
            .map_err(StoreError::db(OP))?;
            let version: i64 = get(&row, "v", OP)?;
            let version = version + 1;
            sqlx::query(
                "INSERT INTO workflow_versions (environment_id, key, version, definition, committed_at) VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(environment_id)
            .bind(key)
            .bind(version)
            .bind(to_json_text(definition))
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(StoreError::db(OP))?;
            sqlx::query("UPDATE workflows SET committed_version = $1 WHERE environment_id = $2 AND key = $3")
                .bind(version)
                .bind(environment_id)
                .bind(key)
                .execute(&mut *tx)
                .await
                .map_err(StoreError::db(OP))?;
        }
        let row = sqlx::query("SELECT * FROM workflows WHERE environment_id = $1 AND key = $2")
            .bind(environment_id)
            .bind(key)
            .fetch_one(&mut *tx)
            .await
            .map_err(StoreError::db(OP))?;
        let record = workflow_from_row(&row)?;
        tx.commit().await.map_err(StoreError::db(OP))?;
        Ok(record)
    }

    async fn get_workflow(
        &self,
        environment_id: &str,
        key: &str,
    ) -> StoreResult<Option<WorkflowRecord>> {
        let row = sqlx::query("SELECT * FROM workflows WHERE environment_id = $1 AND key = $2")
            .bind(environment_id)
            .bind(key)
            .fetch_optional(&mut *self.reader.acquire().await?)
            .await
            .map_err(StoreError::db("get workflow"))?;
        row.as_ref().map(workflow_from_row).transpose()
    }

    async fn list_workflows(
        &self,
        environment_id: &str,
        page: &PageRequest,
    ) -> StoreResult<Page<WorkflowRecord>> {
        let size = page_size(page);
        let mut qb = QueryBuilder::<Db>::new("SELECT * FROM workflows WHERE environment_id = ");
        qb.push_bind(environment_id.to_string());
        let backwards = page.before.is_some() && page.after.is_none();
        if let Some(c) = page.after.as_ref().or(page.before.as_ref()) {
            let Some(key) = cursor::decode(c) else {
                return Ok(empty_page());
            };
            qb.push(if backwards {
                " AND key < "
            } else {
                " AND key > "
            });
            qb.push_bind(key);
        }
        qb.push(if backwards {
            " ORDER BY key DESC LIMIT "
        } else {
            " ORDER BY key ASC LIMIT "
        });
        qb.push_bind(size + 1);
        let rows = qb
            .build()
            .fetch_all(&mut *self.reader.acquire().await?)
            .await
            .map_err(StoreError::db("list workflows"))?;
        let items = rows
            .iter()
            .map(workflow_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(finish_page(items, size, page, backwards, |w| {
            cursor::encode(&w.key)
        }))
    }

    async fn set_workflow_active(
        &self,
        environment_id: &str,
        key: &str,
        active: bool,
        now: Millis,
    ) -> StoreResult<Option<WorkflowRecord>> {
        sqlx::query("UPDATE workflows SET active = $1, updated_at = $2 WHERE environment_id = $3 AND key = $4")
            .bind(active)
            .bind(now)
            .bind(environment_id)
            .bind(key)
            .execute(&mut *self.writer.acquire().await?)
            .await
            .map_err(StoreError::db("set workflow active"))?;
        let row = sqlx::query("SELECT * FROM workflows WHERE environment_id = $1 AND key = $2")
            .bind(environment_id)
            .bind(key)
            .fetch_optional(&mut *self.writer.acquire().await?)
            .await
            .map_err(StoreError::db("set workflow active"))?;
        row.as_ref().map(workflow_from_row).transpose()
    }

    async fn committed_workflow(
        &self,
        environment_id: &str,
        key: &str,
    ) -> StoreResult<Option<CommittedWorkflow>> {
        const OP: &str = "committed workflow";
        let row = sqlx::query(
            "SELECT w.active, v.version, v.definition FROM workflows w \
             JOIN workflow_versions v ON v.environment_id = w.environment_id AND v.key = w.key AND v.version = w.committed_version \
             WHERE w.environment_id = $1 AND w.key = $2",
        )
        .bind(environment_id)
        .bind(key)
        .fetch_optional(&mut *self.reader.acquire().await?)
        .await
        .map_err(StoreError::db(OP))?;
        let Some(row) = row else { return Ok(None) };
        let definition: String = get(&row, "definition", OP)?;
        Ok(Some(CommittedWorkflow {
            key: key.to_string(),
            version: get(&row, "version", OP)?,
            active: get(&row, "active", OP)?,
            definition: parse_json(&definition, OP)?,
        }))
    }

    async fn committed_version(
        &self,
        environment_id: &str,
        key: &str,
    ) -> StoreResult<Option<(i64, bool)>> {
        const OP: &str = "committed version";
        let row = sqlx::query(
            "SELECT committed_version, active FROM workflows \
             WHERE environment_id = $1 AND key = $2 AND committed_version IS NOT NULL",
        )
        .bind(environment_id)
        .bind(key)
        .fetch_optional(&mut *self.reader.acquire().await?)
        .await
        .map_err(StoreError::db(OP))?;
        row.map(|row| {
            Ok((
                get(&row, "committed_version", OP)?,
                get(&row, "active", OP)?,
            ))
        })
        .transpose()
    }

    async fn workflow_version(
        &self,
        environment_id: &str,
        key: &str,
        version: i64,
    ) -> StoreResult<Option<Value>> {
        let row = sqlx::query(
            "SELECT definition FROM workflow_versions WHERE environment_id = $1 AND key = $2 AND version = $3",
        )
        .bind(environment_id)
        .bind(key)
        .bind(version)
        .fetch_optional(&mut *self.reader.acquire().await?)
        .await
        .map_err(StoreError::db("workflow version"))?;
        let Some(row) = row else { return Ok(None) };
        let definition: String = get(&row, "definition", "workflow version")?;
        parse_json(&definition, "workflow version").map(Some)
    }
}
