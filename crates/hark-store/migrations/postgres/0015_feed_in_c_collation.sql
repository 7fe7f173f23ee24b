-- A feed page's plan must not depend on statistics or on the table's size when it was
-- made: PostgreSQL keeps one plan for all values after a connection's first calls. With
-- the environment and the ids in the "C" collation here, and named so by the feed's
-- statements, no other index (the primary key, `messages_env`, `messages_object_recipient`,
-- all in the columns' own collation) can answer a feed page or its counts, and the plan
-- for any values reads the newest entries of one range of this index.
DROP INDEX messages_feed;
CREATE INDEX messages_feed ON messages (environment_id COLLATE "C", recipient_collection, recipient_id, channel_key, id COLLATE "C");
