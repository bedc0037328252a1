-- Connection health: when a tool or watcher last used a connection (SMTP, HTTP, IMAP) or an MCP
-- server successfully, and when and why it last failed. `last_error` is a short, safe message (a
-- stable code and the tool's own wording, the secret scrubbed, at most 300 characters); it is never
-- a credential. A success clears nothing: the state is "failing" while last_error_at is the newer.
-- The tables already carry RLS (0003, 0008) and grants to steward_app; new columns inherit both.
ALTER TABLE connections
  ADD COLUMN last_success_at timestamptz,
  ADD COLUMN last_error_at   timestamptz,
  ADD COLUMN last_error      text CHECK (last_error IS NULL OR length(last_error) <= 300);

ALTER TABLE mcp_servers
  ADD COLUMN last_success_at timestamptz,
  ADD COLUMN last_error_at   timestamptz,
  ADD COLUMN last_error      text CHECK (last_error IS NULL OR length(last_error) <= 300);
