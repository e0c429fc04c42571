-- A contact is (channel, account, channel_id); the ids each platform gives it (Vonage: user,
-- conversation, member) are links, so a new platform needs no new columns. One link per
-- contact, platform and kind, and a platform's id belongs to one contact: an event naming it
-- finds that contact.
CREATE TABLE contact_links (
    contact_id INTEGER NOT NULL REFERENCES contacts (id),
    platform TEXT NOT NULL,
    kind TEXT NOT NULL,
    value TEXT NOT NULL,
    UNIQUE (platform, kind, value),
    UNIQUE (contact_id, platform, kind)
);

-- Existing databases: the Vonage ids move over. In single-conversation mode every contact held
-- the shared conversation's id; it stays with the first contact, as the lookup by conversation
-- found it (the shared conversation itself is configuration, not a link).
INSERT OR IGNORE INTO contact_links (contact_id, platform, kind, value)
    SELECT id, 'vonage', 'user', platform_user_id FROM contacts WHERE platform_user_id IS NOT NULL;
INSERT OR IGNORE INTO contact_links (contact_id, platform, kind, value)
    SELECT id, 'vonage', 'conversation', platform_conversation_id FROM contacts
    WHERE platform_conversation_id IS NOT NULL ORDER BY id;
INSERT OR IGNORE INTO contact_links (contact_id, platform, kind, value)
    SELECT id, 'vonage', 'member', platform_member_id FROM contacts WHERE platform_member_id IS NOT NULL;

DROP INDEX contacts_by_conversation;
DROP INDEX contacts_by_member;
ALTER TABLE contacts DROP COLUMN platform_user_id;
ALTER TABLE contacts DROP COLUMN platform_conversation_id;
ALTER TABLE contacts DROP COLUMN platform_member_id;
