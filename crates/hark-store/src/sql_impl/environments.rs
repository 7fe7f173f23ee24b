//! Environments, API keys, service tokens and signing keys.

use super::*;

#[async_trait]
impl EnvironmentStore for SqlStore {
    async fn ensure_default_environments(&self, now: Millis) -> StoreResult<()> {
        for (slug, name, enhanced) in [
            ("development", "Development", false),
            ("production", "Production", true),
        ] {
            sqlx::query(
                "INSERT INTO environments (id, slug, name, enhanced_security, created_at) \
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT (slug) DO NOTHING",
            )
            .bind(new_id())
            .bind(slug)
            .bind(name)
            .bind(enhanced)
            .bind(now)
            .execute(&mut *self.writer.acquire().await?)
            .await
            .map_err(StoreError::db("ensure environments"))?;
        }
        Ok(())
    }

    async fn environment_by_slug(&self, slug: &str) -> StoreResult<Option<Environment>> {
        let row = sqlx::query("SELECT id, slug, name, enhanced_security, created_at FROM environments WHERE slug = $1")
            .bind(slug)
            .fetch_optional(&mut *self.reader.acquire().await?)
            .await
            .map_err(StoreError::db("environment by slug"))?;
        row.as_ref().map(environment_from_row).transpose()
    }

    async fn set_enhanced_security(&self, environment_id: &str, on: bool) -> StoreResult<()> {
        sqlx::query("UPDATE environments SET enhanced_security = $1 WHERE id = $2")
            .bind(on)
            .bind(environment_id)
            .execute(&mut *self.writer.acquire().await?)
            .await
            .map_err(StoreError::db("set enhanced security"))?;
        Ok(())
    }

    async fn create_api_key(
        &self,
        environment_id: &str,
        kind: KeyKind,
        key_hash: &str,
        now: Millis,
    ) -> StoreResult<()> {
        sqlx::query("INSERT INTO api_keys (key_hash, environment_id, kind, created_at) VALUES ($1, $2, $3, $4)")
            .bind(key_hash)
            .bind(environment_id)
            .bind(kind.as_str())
            .bind(now)
            .execute(&mut *self.writer.acquire().await?)
            .await
            .map_err(StoreError::db("create api key"))?;
        Ok(())
    }

    async fn find_api_key(&self, key_hash: &str) -> StoreResult<Option<(Environment, KeyKind)>> {
        let row = sqlx::query(
            "SELECT e.id, e.slug, e.name, e.enhanced_security, e.created_at, k.kind \
             FROM api_keys k JOIN environments e ON e.id = k.environment_id WHERE k.key_hash = $1",
        )
        .bind(key_hash)
        .fetch_optional(&mut *self.reader.acquire().await?)
        .await
        .map_err(StoreError::db("find api key"))?;
        let Some(row) = row else { return Ok(None) };
        let kind: String = get(&row, "kind", "find api key")?;
        let kind = if kind == "secret" {
            KeyKind::Secret
        } else {
            KeyKind::Public
        };
        Ok(Some((environment_from_row(&row)?, kind)))
    }

    async fn create_service_token(&self, token_hash: &str, now: Millis) -> StoreResult<()> {
        sqlx::query("INSERT INTO service_tokens (token_hash, created_at) VALUES ($1, $2)")
            .bind(token_hash)
            .bind(now)
            .execute(&mut *self.writer.acquire().await?)
            .await
            .map_err(StoreError::db("create service token"))?;
        Ok(())
    }

    async fn service_token_exists(&self, token_hash: &str) -> StoreResult<bool> {
        let row = sqlx::query("SELECT token_hash FROM service_tokens WHERE token_hash = $1")
            .bind(token_hash)
            .fetch_optional(&mut *self.reader.acquire().await?)
            .await
            .map_err(StoreError::db("find service token"))?;
        Ok(row.is_some())
    }

    async fn add_signing_key(
        &self,
        environment_id: &str,
        public_key_pem: &str,
        now: Millis,
    ) -> StoreResult<()> {
        sqlx::query("INSERT INTO signing_keys (id, environment_id, public_key_pem, created_at) VALUES ($1, $2, $3, $4)")
            .bind(new_id())
            .bind(environment_id)
            .bind(public_key_pem)
            .bind(now)
            .execute(&mut *self.writer.acquire().await?)
            .await
            .map_err(StoreError::db("add signing key"))?;
        Ok(())
    }

    async fn signing_keys(&self, environment_id: &str) -> StoreResult<Vec<String>> {
        let rows = sqlx::query(
            "SELECT public_key_pem FROM signing_keys WHERE environment_id = $1 ORDER BY id",
        )
        .bind(environment_id)
        .fetch_all(&mut *self.reader.acquire().await?)
        .await
        .map_err(StoreError::db("list signing keys"))?;
        rows.iter()
            .map(|r| get(r, "public_key_pem", "list signing keys"))
            .collect()
    }

    async fn server_secret(&self, name: &str, candidate: &str, now: Millis) -> StoreResult<String> {
        const OP: &str = "server secret";
        // Insert-then-read rather than read-then-insert: two nodes racing on the first
        // start both end up with the row that won.
        sqlx::query(
            "INSERT INTO server_secrets (name, secret, created_at) VALUES ($1, $2, $3) \
             ON CONFLICT (name) DO NOTHING",
        )
        .bind(name)
        .bind(candidate)
        .bind(now)
        .execute(&mut *self.writer.acquire().await?)
        .await
        .map_err(StoreError::db(OP))?;
        // Read on the writer: on SQLite the reader pool may not see the insert yet.
        let row = sqlx::query("SELECT secret FROM server_secrets WHERE name = $1")
            .bind(name)
            .fetch_one(&mut *self.writer.acquire().await?)
            .await
            .map_err(StoreError::db(OP))?;
        get(&row, "secret", OP)
    }
}
