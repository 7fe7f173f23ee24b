-- Objects are recipients in their own right: a trigger to an object runs the workflow for
-- the object as well as for its subscribers. '' is a user recipient, otherwise the
-- object's collection (recipient_id is then the object's id).
ALTER TABLE recipient_runs ADD COLUMN recipient_collection TEXT NOT NULL DEFAULT '';
ALTER TABLE messages ADD COLUMN recipient_collection TEXT NOT NULL DEFAULT '';
CREATE INDEX messages_object_recipient ON messages (environment_id, recipient_collection, recipient_id, inserted_at);
