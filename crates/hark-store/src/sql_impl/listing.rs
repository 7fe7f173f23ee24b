//! Pieces of the statements that list and look up rows: what a message filter selects
//! (and the terms a feed page names so that only its index answers it), rows found by a
//! list of keys, and keyset pages.

use super::*;

/// How many entries a list of `len` keys or rows is written with: up to 4 as they are,
/// then the next power of two (up to 512), the rest bound as `NULL`, which equals
/// nothing.
///
/// A statement's text names a parameter per entry of its lists, and a database keeps
/// what it learned about a statement (the parse, and on PostgreSQL the plan kept after
/// five calls) per text, per connection. Batches come in every size, so unpadded lists
/// made a text of nearly every size: most were parsed and planned on each call, and they
/// crowded sqlx's statement cache. Padded, a list of up to 512 takes one of eleven
/// lengths.
pub(super) fn padded_len(len: usize) -> usize {
    if len <= 4 || len > 512 {
        len
    } else {
        len.next_power_of_two()
    }
}

/// Keys a statement finds rows by.
pub(super) trait BoundKeys<'a> {
    /// Completes `… WHERE column` with ` IN (…)`, a parameter per value, padded with
    /// `NULL`s to `padded_len` entries (never `NOT IN`: a `NULL` would make it match
    /// nothing).
    fn push_one_of(&mut self, values: impl IntoIterator<Item = String>) -> &mut Self;

    /// `VALUES (…), …`: a row of parameters per item, written by `write_row`, then rows
    /// it writes for `None` (each parameter a `NULL` of its column's type) up to
    /// `padded_len` rows. Only for rows joined on a column by equality, which a `NULL`
    /// never satisfies.
    fn push_values_padded<T>(
        &mut self,
        rows: impl IntoIterator<Item = T>,
        write_row: impl FnMut(Separated<'_, 'a, Db, &'static str>, Option<T>),
    ) -> &mut Self;

    /// The rows `select` (a query ending in `… WHERE <terms> AND `) finds for each of
    /// `keys` (each counted once), compared with `key_column`.
    ///
    /// On PostgreSQL (`PROBE_EACH_KEY`) each key is a probe of its own: a `VALUES` list
    /// of the keys joined to a `LATERAL` lookup, kept from being flattened into a join by
    /// `OFFSET 0`. So any plan for the statement, even one made while the table was
    /// nearly empty and kept for later calls, looks each key up by the index on `<terms>`
    /// and the key. A `VALUES` list's size is known as well to the plan for any values as
    /// to one for the values at hand, so PostgreSQL keeps the plan (an array of keys is
    /// assumed to hold ten, and was planned on every call). SQLite gets `key IN (…)`.
    fn push_select_per_key(
        &mut self,
        keys: Vec<String>,
        key_column: &str,
        select: impl FnOnce(&mut QueryBuilder<'a, Db>),
    ) -> &mut Self;
}

impl<'a> BoundKeys<'a> for QueryBuilder<'a, Db> {
    fn push_one_of(&mut self, values: impl IntoIterator<Item = String>) -> &mut Self {
        self.push(" IN (");
        let mut list = self.separated(", ");
        for value in padded(values) {
            list.push_bind(value);
        }
        self.push(")")
    }

    fn push_values_padded<T>(
        &mut self,
        rows: impl IntoIterator<Item = T>,
        write_row: impl FnMut(Separated<'_, 'a, Db, &'static str>, Option<T>),
    ) -> &mut Self {
        self.push_values(padded(rows), write_row)
    }

    fn push_select_per_key(
        &mut self,
        keys: Vec<String>,
        key_column: &str,
        select: impl FnOnce(&mut QueryBuilder<'a, Db>),
    ) -> &mut Self {
        let mut seen = std::collections::HashSet::with_capacity(keys.len());
        let distinct = keys.into_iter().filter(|key| seen.insert(key.clone()));
        if !PROBE_EACH_KEY {
            select(self);
            self.push(key_column);
            return self.push_one_of(distinct);
        }
        self.push("SELECT found.* FROM (");
        self.push_values_padded(distinct, |mut row, key| {
            row.push_bind(key);
        });
        self.push(") AS wanted(key) CROSS JOIN LATERAL (");
        select(self);
        self.push(format!("{key_column} = wanted.key OFFSET 0) AS found"))
    }
}

/// `items`, then `None`s up to `padded_len` entries.
fn padded<T>(items: impl IntoIterator<Item = T>) -> Vec<Option<T>> {
    let mut list: Vec<Option<T>> = items.into_iter().map(Some).collect();
    list.resize_with(padded_len(list.len()), || None);
    list
}

/// What a message filter selects: one recipient's messages on one channel (a feed, which
/// has an index of its own, `messages_feed`), or any other selection.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum MessageSelection {
    Feed,
    Other,
}

impl MessageSelection {
    fn of(f: &MessageFilter) -> Self {
        if f.workflow_run_id.is_none() && f.recipient_id.is_some() && f.channel_key.is_some() {
            MessageSelection::Feed
        } else {
            MessageSelection::Other
        }
    }

    /// The id as the selection's pages order and compare it.
    pub(crate) fn id(self) -> &'static str {
        match self {
            MessageSelection::Feed => FEED_ID,
            MessageSelection::Other => "id",
        }
    }
}

/// ` WHERE …` for the messages `f` selects; says what kind of selection it is, whose
/// [`MessageSelection::id`] its pages order by.
pub(crate) fn push_message_filter(
    qb: &mut QueryBuilder<'_, Db>,
    environment_id: &str,
    f: &MessageFilter,
) -> MessageSelection {
    let selection = MessageSelection::of(f);
    if let Some(workflow_run_id) = &f.workflow_run_id {
        // Through the trigger's runs (`recipient_runs_workflow_run`) to each run's
        // messages (their `(recipient_run_id, step_ref)` key); messages have no index of
        // their own on it. A message's environment and workflow run are its run's. No
        // environment term on `messages`, so no index of theirs that leads with it
        // competes: without statistics SQLite takes any such index as selective, and
        // walked the environment's messages in id order instead.
        qb.push(" WHERE recipient_run_id IN (");
        runs::push_trigger_run_ids(qb, environment_id, workflow_run_id);
        qb.push(")");
    } else if selection == MessageSelection::Feed {
        // Named as `messages_feed` holds it (see `FEED_ENVIRONMENT`).
        qb.push(format!(" WHERE {FEED_ENVIRONMENT} = "));
        qb.push_bind(environment_id.to_string());
    } else {
        qb.push(" WHERE environment_id = ");
        qb.push_bind(environment_id.to_string());
    }
    let eq = |qb: &mut QueryBuilder<'_, Db>, column: &str, value: &Option<String>| {
        if let Some(v) = value {
            qb.push(format!(" AND {column} = "));
            qb.push_bind(v.clone());
        }
    };
    push_recipient(qb, &f.recipient_id, &f.recipient_collection);
    eq(qb, "channel_key", &f.channel_key);
    eq(qb, "workflow_key", &f.workflow_key);
    eq(qb, "recipient_run_id", &f.recipient_run_id);
    eq(qb, "tenant", &f.tenant);
    match f.has_tenant {
        Some(true) => {
            qb.push(" AND tenant IS NOT NULL");
        }
        Some(false) => {
            qb.push(" AND tenant IS NULL");
        }
        None => {}
    }
    if !f.statuses.is_empty() {
        qb.push(" AND status");
        qb.push_one_of(f.statuses.iter().cloned());
    }
    for e in &f.engagement {
        let clause = match e.as_str() {
            "seen" => " AND seen_at IS NOT NULL",
            "unseen" => " AND seen_at IS NULL",
            "read" => " AND read_at IS NOT NULL",
            "unread" => " AND read_at IS NULL",
            "interacted" => " AND interacted_at IS NOT NULL",
            "link_clicked" => " AND link_clicked_at IS NOT NULL",
            "archived" => " AND archived_at IS NOT NULL",
            "unarchived" => " AND archived_at IS NULL",
            _ => "",
        };
        qb.push(clause);
    }
    match f.archived {
        ArchivedFilter::Exclude => {
            qb.push(" AND archived_at IS NULL");
        }
        ArchivedFilter::Only => {
            qb.push(" AND archived_at IS NOT NULL");
        }
        ArchivedFilter::Include => {}
    }
    if !f.categories.is_empty() {
        qb.push(" AND (");
        for (i, c) in f.categories.iter().enumerate() {
            if i > 0 {
                qb.push(" OR ");
            }
            qb.push("categories LIKE ");
            qb.push_bind(format!("%{}%", Value::String(c.clone())));
        }
        qb.push(")");
    }
    if !f.message_ids.is_empty() {
        qb.push(" AND id");
        qb.push_one_of(f.message_ids.iter().cloned());
    }
    for (key, value) in &f.trigger_data {
        qb.push(" AND ");
        super::super::push_json_field_eq(qb, "data", key, value);
    }
    push_inserted_at_bounds(
        qb,
        [
            (">=", f.inserted_at_gte),
            ("<=", f.inserted_at_lte),
            (">", f.inserted_at_gt),
            ("<", f.inserted_at_lt),
        ],
    );
    selection
}

/// `AND recipient_id = … AND recipient_collection = …` when a recipient is given (no
/// collection: a user). A user and an object may share an id: a recipient is the pair.
pub(crate) fn push_recipient(
    qb: &mut QueryBuilder<'_, Db>,
    recipient_id: &Option<String>,
    collection: &Option<String>,
) {
    if let Some(id) = recipient_id {
        qb.push(" AND recipient_id = ");
        qb.push_bind(id.clone());
        qb.push(" AND recipient_collection = ");
        qb.push_bind(collection.clone().unwrap_or_default());
    }
}

/// `AND inserted_at <op> …` for each bound given.
pub(crate) fn push_inserted_at_bounds<const N: usize>(
    qb: &mut QueryBuilder<'_, Db>,
    bounds: [(&str, Option<Millis>); N],
) {
    for (op, value) in bounds {
        if let Some(v) = value {
            qb.push(format!(" AND inserted_at {op} "));
            qb.push_bind(v);
        }
    }
}

/// User `u`'s unarchived messages on `in-app-feed`, and their first page of 50: the
/// feed read the plan tests inspect.
#[cfg(test)]
pub(crate) fn first_feed_page() -> (MessageFilter, PageRequest) {
    let filter = MessageFilter {
        recipient_id: Some("u".into()),
        channel_key: Some("in-app-feed".into()),
        archived: ArchivedFilter::Exclude,
        ..MessageFilter::default()
    };
    let first_page = PageRequest {
        after: None,
        before: None,
        page_size: 50,
    };
    (filter, first_page)
}

/// The two statements a feed page sends (its first page of 50 and its badge counts) for
/// one user's unarchived messages on one channel, with `$1…` for the environment, user,
/// collection, channel and (the page only) limit: what the plan tests inspect.
#[cfg(test)]
pub(crate) fn feed_page_statements() -> (String, String) {
    let (filter, first_page) = first_feed_page();
    let mut page = QueryBuilder::<Db>::new("SELECT id FROM messages");
    let selection = push_message_filter(&mut page, "env", &filter);
    push_id_page_by(&mut page, &first_page, 50, selection.id());
    let mut counts = QueryBuilder::<Db>::new("SELECT COUNT(*) FROM messages");
    push_message_filter(&mut counts, "env", &filter);
    (page.into_sql(), counts.into_sql())
}

/// The rows of `select` (ending in `WHERE `) whose `id` is one of `ids` and, when given,
/// whose `environment_id` matches: a probe of the primary key per id.
pub(crate) fn select_by_ids<'a>(
    select: &str,
    environment_id: Option<&str>,
    ids: Vec<String>,
) -> QueryBuilder<'a, Db> {
    let mut qb = QueryBuilder::<Db>::new("");
    qb.push_select_per_key(ids, "id", |qb| {
        qb.push(select);
        if let Some(environment_id) = environment_id {
            qb.push("environment_id = ");
            qb.push_bind(environment_id.to_string());
            qb.push(" AND ");
        }
    });
    qb
}

/// The statements that find rows by a list of keys, each with the values to run it
/// with and the index it must probe with the keys: what the plan tests inspect.
#[cfg(test)]
pub(crate) fn key_list_statements() -> Vec<(&'static str, String, &'static str, &'static str)> {
    let ids = || vec!["a".to_string(), "b".to_string(), "c".to_string()];
    vec![
        (
            "documents_of",
            objects::select_documents_of("env", ids(), "preferences").into_sql(),
            "('a', 'b', 'c', 'env', 'preferences')",
            "recipient_documents_pkey",
        ),
        (
            "users_by_id",
            select_by_ids(
                "SELECT id, properties FROM users WHERE ",
                Some("env"),
                ids(),
            )
            .into_sql(),
            "('a', 'b', 'c', 'env')",
            "users_pkey",
        ),
        (
            "runs_by_id",
            select_by_ids(
                &format!("SELECT {RUN_COLUMNS} FROM recipient_runs WHERE "),
                None,
                ids(),
            )
            .into_sql(),
            "('a', 'b', 'c')",
            "recipient_runs_pkey",
        ),
        (
            "messages_by_id",
            select_by_ids(
                &format!("SELECT {MESSAGE_COLUMNS} FROM messages WHERE "),
                None,
                ids(),
            )
            .into_sql(),
            "('a', 'b', 'c')",
            "messages_pkey",
        ),
    ]
}

/// Appends keyset pagination over `id` for newest-first lists. Returns whether the query
/// walks backwards (a `before` cursor), or `None` when the cursor is malformed.
pub(crate) fn push_id_page(
    qb: &mut QueryBuilder<'_, Db>,
    page: &PageRequest,
    size: i64,
) -> Option<bool> {
    push_id_page_by(qb, page, size, "id")
}

/// [`push_id_page`] over `id` as written by `id` (the column, or the column in the
/// collation a selection's index holds it in).
pub(crate) fn push_id_page_by(
    qb: &mut QueryBuilder<'_, Db>,
    page: &PageRequest,
    size: i64,
    id: &str,
) -> Option<bool> {
    let backwards = page.before.is_some() && page.after.is_none();
    if let Some(after) = &page.after {
        qb.push(format!(" AND {id} < "));
        qb.push_bind(cursor::decode(after)?);
    } else if let Some(before) = &page.before {
        qb.push(format!(" AND {id} > "));
        qb.push_bind(cursor::decode(before)?);
    }
    qb.push(if backwards {
        format!(" ORDER BY {id} ASC LIMIT ")
    } else {
        format!(" ORDER BY {id} DESC LIMIT ")
    });
    qb.push_bind(size + 1);
    Some(backwards)
}

/// Keyset pagination over `(inserted_at, id)`: the cursor condition, order and limit.
/// Returns whether the page is read backwards, or `None` for a cursor that can't be read.
pub(super) fn push_time_page(
    qb: &mut QueryBuilder<'_, Db>,
    page: &PageRequest,
    size: i64,
) -> Option<bool> {
    let backwards = page.before.is_some() && page.after.is_none();
    if let Some(c) = page.after.as_ref().or(page.before.as_ref()) {
        let (ms, id) = cursor::decode_pair(c)?;
        let op = if backwards { "<" } else { ">" };
        qb.push(format!(" AND (inserted_at {op} "));
        qb.push_bind(ms);
        qb.push(" OR (inserted_at = ");
        qb.push_bind(ms);
        qb.push(format!(" AND id {op} "));
        qb.push_bind(id);
        qb.push("))");
    }
    qb.push(if backwards {
        " ORDER BY inserted_at DESC, id DESC LIMIT "
    } else {
        " ORDER BY inserted_at ASC, id ASC LIMIT "
    });
    qb.push_bind(size + 1);
    Some(backwards)
}

pub(super) fn empty_page<T>() -> Page<T> {
    Page {
        entries: Vec::new(),
        after: None,
        before: None,
    }
}

#[cfg(test)]
mod tests {
    use super::super::delivery_batch::delete_jobs_holding;
    use super::*;

    #[test]
    fn lists_of_five_to_eight_are_one_statement_text() {
        // Every way a statement takes a list: an `IN` list, `VALUES` rows, keys probed
        // one by one (an `IN` list on SQLite), and the delivery jobs' fencing delete.
        let text = |len: usize| {
            let keys: Vec<String> = (0..len).map(|i| format!("k{i}")).collect();
            let mut qb = QueryBuilder::<Db>::new("SELECT id FROM t WHERE id");
            qb.push_one_of(keys.clone());
            qb.push(" AND (id, n) IN (");
            qb.push_values_padded(&keys, |mut row, key| {
                row.push_bind(key.cloned()).push_bind(key.map(|_| 1_i64));
            });
            qb.push(") UNION ALL ");
            qb.push_select_per_key(keys.clone(), "id", |qb| {
                qb.push("SELECT id FROM t WHERE ");
            });
            let jobs: Vec<(&str, &str)> = keys.iter().map(|k| (k.as_str(), "lease")).collect();
            (qb.into_sql(), delete_jobs_holding(&jobs).into_sql())
        };
        for len in 5..=8 {
            assert_eq!(text(len), text(8), "{len}");
        }
        assert_ne!(text(4), text(5));
        // The padding is bound parameters, not literals, so the text is the same.
        assert!(!text(5).0.contains("NULL"));
    }

    #[test]
    fn lists_up_to_512_take_one_of_eleven_lengths() {
        let lengths: Vec<usize> = (1..=600).map(padded_len).collect();
        assert_eq!(&lengths[..9], &[1, 2, 3, 4, 8, 8, 8, 8, 16]);
        assert_eq!(padded_len(500), 512);
        assert_eq!(padded_len(513), 513);
        // Never shorter than the list, and one of 1, 2, 3, 4 or a power of two to 512.
        for (len, padded) in (1..=512).zip(&lengths) {
            assert!(*padded >= len);
            assert!(*padded <= 4 || padded.is_power_of_two());
        }
        let mut shapes = lengths[..512].to_vec();
        shapes.dedup();
        assert_eq!(shapes.len(), 11);
    }
}
