//! A feed page, its badge counts and its recipient in one statement.
//!
//! The in-app feed route needs all three, and every new message makes each watching
//! client read them again. Sent as three statements (even in parallel, on three pooled
//! connections) they cost three round trips and three wake-ups of the database for
//! some 40 µs of work between them. One statement joins them: the counts' single row,
//! the user's row if stored, and the page's rows, each read as on its own (the page and
//! the counts from one range of `messages_feed`, the user by its key).

use super::messages::FEED_COUNTS;
use super::*;

/// Column names of the counts and the user, apart from the page's message columns.
const TOTAL: &str = "feed_total";
const UNREAD: &str = "feed_unread";
const UNSEEN: &str = "feed_unseen";
const USER: UserColumns = UserColumns {
    id: "feed_user_id",
    properties: "feed_user_properties",
    inserted_at: "feed_user_inserted_at",
    updated_at: "feed_user_updated_at",
};

/// A feed read's statement, with its binds, and how to read its rows.
pub(super) struct FeedReadStatement<'a> {
    pub(super) query: QueryBuilder<'a, Db>,
    pub(super) shape: FeedReadShape,
}

/// What a feed read's rows are: which page, and whether they come in its order.
#[derive(Clone, Copy)]
pub(super) struct FeedReadShape {
    /// Whether the page is read backwards (`before` without `after`); `None` when a
    /// cursor cannot be read, which selects no page rows, as on `list_messages` (the
    /// counts and the user are still read).
    pub(super) backwards: Option<bool>,
    /// Whether the page is a feed selection: then the statement is kept prepared (for
    /// the reason `list_messages` gives), and its rows come unordered and are sorted
    /// by `feed_read_from_rows`.
    pub(super) feed: bool,
}

pub(super) fn feed_read_statement<'a>(
    environment_id: &str,
    filter: &MessageFilter,
    count_filter: &MessageFilter,
    page: &PageRequest,
    user_id: &str,
) -> FeedReadStatement<'a> {
    // The cursor the page goes by, as `push_id_page_by` picks it.
    let readable = page
        .after
        .as_ref()
        .or(page.before.as_ref())
        .is_none_or(|c| cursor::decode(c).is_some());
    let page_columns = if readable { ", feed_page.*" } else { "" };
    let mut qb = QueryBuilder::<Db>::new(format!(
        "SELECT feed_counts.total AS {TOTAL}, feed_counts.unread AS {UNREAD}, \
         feed_counts.unseen AS {UNSEEN}, feed_user.id AS {}, feed_user.properties AS {}, \
         feed_user.inserted_at AS {}, feed_user.updated_at AS {}{page_columns} FROM (\
         SELECT {FEED_COUNTS} FROM messages",
        USER.id, USER.properties, USER.inserted_at, USER.updated_at
    ));
    push_message_filter(&mut qb, environment_id, count_filter);
    qb.push(
        ") AS feed_counts LEFT JOIN (SELECT id, properties, inserted_at, updated_at \
         FROM users WHERE environment_id = ",
    );
    qb.push_bind(environment_id.to_string());
    qb.push(" AND id = ");
    qb.push_bind(user_id.to_string());
    qb.push(") AS feed_user ON 1 = 1");
    if !readable {
        return FeedReadStatement {
            query: qb,
            shape: FeedReadShape {
                backwards: None,
                feed: false,
            },
        };
    }
    qb.push(format!(
        " LEFT JOIN (SELECT {MESSAGE_COLUMNS} FROM messages"
    ));
    let selection = push_message_filter(&mut qb, environment_id, filter);
    let backwards = push_id_page_by(&mut qb, page, page_size(page), selection.id());
    qb.push(") AS feed_page ON 1 = 1");
    // A join keeps no order, so the page's rows (at most 101) are sorted again. A feed
    // page compares ids byte by byte on both stores (see `FEED_ID`), as Rust orders
    // strings: sorting them here spares the database a sort of whole rows, which cost
    // more than the page's own read. Any other selection orders ids by the column's
    // collation, which only the database knows.
    let feed = selection == MessageSelection::Feed;
    if !feed {
        let direction = if backwards == Some(true) {
            "ASC"
        } else {
            "DESC"
        };
        qb.push(format!(" ORDER BY feed_page.id {direction}"));
    }
    FeedReadStatement {
        query: qb,
        shape: FeedReadShape { backwards, feed },
    }
}

/// The feed read's answer from the rows of its statement.
pub(super) fn feed_read_from_rows(
    rows: &[DbRow],
    shape: &FeedReadShape,
    page: &PageRequest,
) -> StoreResult<FeedRead> {
    const OP: &str = "read feed";
    let FeedReadShape { backwards, feed } = *shape;
    // The counts' row is always there, joined to each page row or alone.
    let first = rows.first().ok_or_else(|| StoreError::Corrupt {
        operation: OP,
        detail: "the feed's counts returned no row".into(),
    })?;
    let counts = FeedCounts {
        total: get(first, TOTAL, OP)?,
        unread: get(first, UNREAD, OP)?,
        unseen: get(first, UNSEEN, OP)?,
    };
    let user = match get::<Option<String>>(first, USER.id, OP)? {
        Some(_) => Some(user_from_named_row(first, &USER)?),
        None => None,
    };
    let page = match backwards {
        Some(backwards) => {
            let mut messages = Vec::with_capacity(rows.len());
            for row in rows {
                // The counts' row alone carries no message.
                if get::<Option<String>>(row, "id", OP)?.is_some() {
                    messages.push(message_from_row(row)?);
                }
            }
            if feed {
                // In the order the page read them: newest first, or oldest first
                // for `before` (`finish_page` turns those around).
                if backwards {
                    messages.sort_unstable_by(|a, b| a.id.cmp(&b.id));
                } else {
                    messages.sort_unstable_by(|a, b| b.id.cmp(&a.id));
                }
            }
            finish_page(messages, page_size(page), page, backwards, |m| {
                cursor::encode(&m.id)
            })
        }
        None => empty_page(),
    };
    Ok(FeedRead { counts, page, user })
}

/// A feed read's statement for user `u`'s first page of 50 on `in-app-feed`, with
/// `$1…` for the counts' terms (environment, user, collection, channel), the user's
/// (environment, id) and the page's (the counts' four and the limit): what the plan
/// tests inspect.
#[cfg(test)]
pub(crate) fn feed_read_statement_sql() -> String {
    let (filter, first_page) = first_feed_page();
    feed_read_statement("env", &filter, &filter, &first_page, "u")
        .query
        .into_sql()
}
