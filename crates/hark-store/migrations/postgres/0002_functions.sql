-- Workflow functions: run state, batches, throttles, waits, early cancellations and
-- once-per-recipient triggers.

-- Per-run state the steps build up: trigger settings, batch results, step outputs.
ALTER TABLE recipient_runs ADD COLUMN state TEXT NOT NULL DEFAULT '{}';

-- A message sent after a batch: its activities, total_activities and total_actors.
ALTER TABLE messages ADD COLUMN batch TEXT;

-- Architecture invariant: at most one open batch per key; every activity is one item of
-- exactly one batch.
CREATE TABLE batches (
    id TEXT PRIMARY KEY,
    environment_id TEXT NOT NULL,
    batch_key TEXT NOT NULL,
    status TEXT NOT NULL,
    workflow_key TEXT NOT NULL,
    step_ref TEXT NOT NULL,
    settings TEXT NOT NULL,
    opened_at BIGINT NOT NULL,
    closes_at BIGINT NOT NULL,
    item_count BIGINT NOT NULL,
    closed_at BIGINT
);
CREATE UNIQUE INDEX batches_open ON batches (environment_id, batch_key) WHERE status = 'open';

CREATE TABLE batch_items (
    batch_id TEXT NOT NULL,
    run_id TEXT NOT NULL,
    seq BIGINT NOT NULL,
    actor TEXT,
    data TEXT NOT NULL,
    inserted_at BIGINT NOT NULL,
    PRIMARY KEY (batch_id, run_id)
);
CREATE INDEX batch_items_run ON batch_items (run_id);

CREATE TABLE throttles (
    environment_id TEXT NOT NULL,
    throttle_key TEXT NOT NULL,
    window_end BIGINT NOT NULL,
    hits BIGINT NOT NULL,
    PRIMARY KEY (environment_id, throttle_key)
);

CREATE TABLE waits (
    id TEXT PRIMARY KEY,
    environment_id TEXT NOT NULL,
    run_id TEXT NOT NULL,
    recipient_id TEXT NOT NULL,
    event_type TEXT NOT NULL,
    event_key TEXT NOT NULL,
    source_key TEXT NOT NULL,
    status TEXT NOT NULL,
    expires_at BIGINT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX waits_open ON waits (environment_id, recipient_id) WHERE status = 'open';
CREATE INDEX waits_run ON waits (run_id);

-- Candidate events for an open wait; the waiting run evaluates them when it wakes.
CREATE TABLE wait_events (
    id TEXT PRIMARY KEY,
    signal_id TEXT NOT NULL,
    wait_id TEXT NOT NULL,
    payload TEXT NOT NULL,
    inserted_at BIGINT NOT NULL
);
CREATE INDEX wait_events_wait ON wait_events (wait_id, id);
CREATE INDEX wait_events_signal ON wait_events (signal_id);

-- A cancel that matched no run yet; a trigger with the same key before `expires_at` is
-- cancelled on arrival. `recipient_id` '' means every recipient.
CREATE TABLE early_cancellations (
    environment_id TEXT NOT NULL,
    workflow_key TEXT NOT NULL,
    cancellation_key TEXT NOT NULL,
    recipient_id TEXT NOT NULL,
    expires_at BIGINT NOT NULL,
    PRIMARY KEY (environment_id, workflow_key, cancellation_key, recipient_id)
);

-- Recipients that already ran a once-per-recipient workflow ('' tenant when not per tenant).
CREATE TABLE trigger_once (
    environment_id TEXT NOT NULL,
    workflow_key TEXT NOT NULL,
    recipient_id TEXT NOT NULL,
    tenant TEXT NOT NULL,
    PRIMARY KEY (environment_id, workflow_key, recipient_id, tenant)
);

CREATE INDEX jobs_kind_ref ON jobs (kind, ref_id);

-- Objects (tenants are objects in the `$tenants` collection), as property bags.
CREATE TABLE objects (
    environment_id TEXT NOT NULL,
    collection TEXT NOT NULL,
    id TEXT NOT NULL,
    properties TEXT NOT NULL,
    inserted_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (environment_id, collection, id)
);
CREATE INDEX objects_order ON objects (environment_id, collection, inserted_at, id);

-- Per-recipient JSON documents: preference sets and channel data. `owner` is
-- `user:{id}` or `object:{collection}:{id}`.
CREATE TABLE recipient_documents (
    environment_id TEXT NOT NULL,
    owner TEXT NOT NULL,
    kind TEXT NOT NULL,
    key TEXT NOT NULL,
    data TEXT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (environment_id, owner, kind, key)
);

-- Subscriptions of recipients (users, or objects for nesting) to objects.
-- `recipient_collection` is '' for users.
CREATE TABLE subscriptions (
    environment_id TEXT NOT NULL,
    collection TEXT NOT NULL,
    object_id TEXT NOT NULL,
    recipient_collection TEXT NOT NULL,
    recipient_id TEXT NOT NULL,
    properties TEXT NOT NULL,
    inserted_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (environment_id, collection, object_id, recipient_collection, recipient_id)
);
CREATE INDEX subscriptions_recipient ON subscriptions (environment_id, recipient_collection, recipient_id);

-- A trigger's fan-out to an object's subscribers, streamed page by page: `after_*` is the
-- last subscriber handled, committed with the runs it created.
CREATE TABLE fanouts (
    id TEXT PRIMARY KEY,
    environment_id TEXT NOT NULL,
    workflow_run_id TEXT NOT NULL,
    collection TEXT NOT NULL,
    object_id TEXT NOT NULL,
    depth BIGINT NOT NULL,
    after_collection TEXT,
    after_id TEXT,
    trigger TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

-- Architecture invariant: one run per recipient per trigger, however many paths lead to it.
CREATE TABLE fanout_seen (
    workflow_run_id TEXT NOT NULL,
    recipient_collection TEXT NOT NULL,
    recipient_id TEXT NOT NULL,
    PRIMARY KEY (workflow_run_id, recipient_collection, recipient_id)
);

-- Static audience members. `tenant` is '' for members outside any tenant.
CREATE TABLE audience_members (
    environment_id TEXT NOT NULL,
    audience_key TEXT NOT NULL,
    user_id TEXT NOT NULL,
    tenant TEXT NOT NULL,
    added_at BIGINT NOT NULL,
    PRIMARY KEY (environment_id, audience_key, user_id, tenant)
);
CREATE INDEX audience_members_user ON audience_members (environment_id, user_id);
