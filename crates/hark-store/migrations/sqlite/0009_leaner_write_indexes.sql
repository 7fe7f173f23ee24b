-- Fewer index entries per write on the hot path.
-- Every query that finds jobs by ref_id also names their kind, which jobs_kind_ref
-- (kind, ref_id) serves; jobs_ref was one more entry for every job inserted and deleted.
DROP INDEX jobs_ref;
-- Object recipients' messages are listed by collection; a user's messages ('') are found
-- through messages_feed. Indexing only objects' messages spares an entry per user message.
-- Queries repeat the predicate literally so both databases know the index applies.
DROP INDEX messages_object_recipient;
CREATE INDEX messages_object_recipient ON messages (environment_id, recipient_collection, recipient_id, inserted_at)
    WHERE recipient_collection <> '';
