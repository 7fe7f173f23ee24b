-- Audience definitions (Management API). Static audiences list their members in
-- `audience_members`; dynamic ones hold `segments` of user-property conditions, evaluated
-- against the user's current properties. Archived audiences keep their row.
CREATE TABLE audiences (
    environment_id TEXT NOT NULL,
    key TEXT NOT NULL,
    name TEXT NOT NULL,
    description TEXT,
    audience_type TEXT NOT NULL,
    segments TEXT NOT NULL,
    archived_at BIGINT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (environment_id, key)
);
