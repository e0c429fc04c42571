-- The channel's reply window per contact (wechat-api.md §6.2): until when replies are allowed and
-- how many. A message opens 48 hours / 5 replies; a follow, scan or menu click 1 minute / 3
-- replies; an unsubscribe closes it.
ALTER TABLE contacts ADD COLUMN window_until INTEGER;
ALTER TABLE contacts ADD COLUMN window_quota INTEGER;
