-- A feed page reads one recipient's messages on one channel, newest first. A recipient is
-- the pair (collection, id), and the feed index lacked the collection: a page then either
-- sorted all of the recipient's messages or, in a plan made before any values were known,
-- walked the environment's newest messages. With every term of the read in the index, in
-- order, a page is the newest entries of one range, whatever the values.
DROP INDEX messages_feed;
CREATE INDEX messages_feed ON messages (environment_id, recipient_collection, recipient_id, channel_key, id);
