-- Email layouts: the HTML and text frames an email step's body is rendered into
-- (`{{ content }}`), selected by the step's `settings.layout_key`.
CREATE TABLE email_layouts (
    environment_id TEXT NOT NULL,
    key TEXT NOT NULL,
    name TEXT NOT NULL,
    html_layout TEXT NOT NULL,
    text_layout TEXT NOT NULL,
    footer_links TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (environment_id, key)
);
