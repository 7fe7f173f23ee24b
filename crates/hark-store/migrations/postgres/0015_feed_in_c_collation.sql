-- A feed page's plan must not depend on statistics or on the table's size when it was
-- made: PostgreSQL keeps one plan for all values after a connection's first calls. With
-- the environment and the ids in the "C" collation here, and named so by the feed's
-- statements, no other index (the primary key, `messages_env`, `messages_object_recipient`,
-- all in the columns' own collation) can answer a feed page or its counts, and the plan
-- for any values reads the newest entries of one range of this index.
--
-- The new index is built before the old one is dropped: the build blocks writes to
-- `messages` but not reads, and the drop, which blocks both, is over at once.
CREATE INDEX messages_feed_c ON messages (environment_id COLLATE "C", recipient_collection, recipient_id, channel_key, id COLLATE "C");
DROP INDEX messages_feed;
ALTER INDEX messages_feed_c RENAME TO messages_feed;
