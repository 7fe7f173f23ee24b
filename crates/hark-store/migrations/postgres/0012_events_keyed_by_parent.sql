-- Run events, message events and delivery logs are only ever read through their parent
-- (a run's events, a message's events or logs) in id order, never by id alone. Keyed by
-- (parent, id), each row adds one index entry instead of two: the separate index on the
-- parent was the only one reads used, and the key on id alone only checked uniqueness.
ALTER TABLE run_events DROP CONSTRAINT run_events_pkey,
    ADD CONSTRAINT run_events_pkey PRIMARY KEY (recipient_run_id, id);
DROP INDEX run_events_run;

ALTER TABLE message_events DROP CONSTRAINT message_events_pkey,
    ADD CONSTRAINT message_events_pkey PRIMARY KEY (message_id, id);
DROP INDEX message_events_message;

ALTER TABLE delivery_logs DROP CONSTRAINT delivery_logs_pkey,
    ADD CONSTRAINT delivery_logs_pkey PRIMARY KEY (message_id, id);
DROP INDEX delivery_logs_message;
