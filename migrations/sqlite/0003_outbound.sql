-- Outbound delivery: a long text goes out in several parts; parts_sent lets a retry resume
-- after the last part WeChat accepted instead of sending earlier parts twice.
ALTER TABLE messages ADD COLUMN parts_sent INTEGER NOT NULL DEFAULT 0;
-- The remote side's error code of the last failure (WeChat errcode, Vonage code).
ALTER TABLE messages ADD COLUMN error_code TEXT;
-- Customer-service messages sent since the customer last wrote: WeChat allows a few per
-- 48-hour window (wechat-api.md §6.2); reset by every inbound message.
ALTER TABLE contacts ADD COLUMN window_sends INTEGER NOT NULL DEFAULT 0;
CREATE INDEX contacts_by_member ON contacts (platform_member_id);
