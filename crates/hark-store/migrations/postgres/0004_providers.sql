-- Provider status callbacks: the id a provider gave a message when it accepted it, so a
-- callback that names only that id (Twilio's MessageSid) finds the message.
ALTER TABLE messages ADD COLUMN provider_message_id TEXT;
CREATE INDEX messages_provider_message_id ON messages (channel_key, provider_message_id)
    WHERE provider_message_id IS NOT NULL;
