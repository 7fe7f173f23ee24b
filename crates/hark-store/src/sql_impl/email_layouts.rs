//! Email layouts.

use super::*;

const LAYOUT_COLUMNS: &str =
    "key, name, html_layout, text_layout, footer_links, created_at, updated_at";

fn layout_from_row(row: &DbRow) -> Result<EmailLayout, StoreError> {
    const OP: &str = "read email layout";
    let footer_links: String = get(row, "footer_links", OP)?;
    Ok(EmailLayout {
        key: get(row, "key", OP)?,
        name: get(row, "name", OP)?,
        html_layout: get(row, "html_layout", OP)?,
        text_layout: get(row, "text_layout", OP)?,
        footer_links: parse_json(&footer_links, OP)?,
        created_at: get(row, "created_at", OP)?,
        updated_at: get(row, "updated_at", OP)?,
    })
}

#[async_trait]
impl EmailLayoutStore for SqlStore {
    async fn upsert_email_layout(
        &self,
        environment_id: &str,
        layout: &EmailLayout,
        now: Millis,
    ) -> StoreResult<EmailLayout> {
        let row = sqlx::query(&format!(
            "INSERT INTO email_layouts (environment_id, key, name, html_layout, text_layout, \
             footer_links, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $7) \
             ON CONFLICT (environment_id, key) DO UPDATE SET name = excluded.name, \
             html_layout = excluded.html_layout, text_layout = excluded.text_layout, \
             footer_links = excluded.footer_links, updated_at = excluded.updated_at \
             RETURNING {LAYOUT_COLUMNS}"
        ))
        .bind(environment_id)
        .bind(&layout.key)
        .bind(&layout.name)
        .bind(&layout.html_layout)
        .bind(&layout.text_layout)
        .bind(to_json_text(&layout.footer_links))
        .bind(now)
        .fetch_one(&mut *self.writer.acquire().await?)
        .await
        .map_err(StoreError::db("upsert email layout"))?;
        layout_from_row(&row)
    }

    async fn get_email_layout(
        &self,
        environment_id: &str,
        key: &str,
    ) -> StoreResult<Option<EmailLayout>> {
        let row = sqlx::query(&format!(
            "SELECT {LAYOUT_COLUMNS} FROM email_layouts WHERE environment_id = $1 AND key = $2"
        ))
        .bind(environment_id)
        .bind(key)
        .fetch_optional(&mut *self.reader.acquire().await?)
        .await
        .map_err(StoreError::db("get email layout"))?;
        row.as_ref().map(layout_from_row).transpose()
    }

    async fn list_email_layouts(
        &self,
        environment_id: &str,
        after: Option<&str>,
        limit: i64,
    ) -> StoreResult<Vec<EmailLayout>> {
        let rows = sqlx::query(&format!(
            "SELECT {LAYOUT_COLUMNS} FROM email_layouts WHERE environment_id = $1 \
             AND key > $2 ORDER BY key LIMIT $3"
        ))
        .bind(environment_id)
        .bind(after.unwrap_or(""))
        .bind(limit)
        .fetch_all(&mut *self.reader.acquire().await?)
        .await
        .map_err(StoreError::db("list email layouts"))?;
        rows.iter().map(layout_from_row).collect()
    }
}
