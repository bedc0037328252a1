-- Mutual TLS for HTTP connections: the client certificate and CA are non-secret settings in
-- `config` (clientCertificate, caCertificate); the client's private key is a second write-only secret,
-- AES-256-GCM ciphertext under the tenant's data key, additional data = tenant id + "<id>:client-key".
-- (Rate limits and IP allow-lists need no table: counters live in memory or Redis, the allow-list
-- and quotas in tenants.settings, changed only through their own audited endpoints.)
ALTER TABLE connections
  ADD COLUMN client_key_ciphertext bytea,
  ADD COLUMN client_key_nonce      bytea CHECK (client_key_nonce IS NULL OR length(client_key_nonce) = 12),
  ADD CONSTRAINT connections_client_key_pair CHECK ((client_key_ciphertext IS NULL) = (client_key_nonce IS NULL));

-- The same for HTTP MCP servers: `tls` holds clientCertificate and caCertificate (PEM, not secret).
ALTER TABLE mcp_servers
  ADD COLUMN tls                   jsonb NOT NULL DEFAULT '{}'::jsonb,
  ADD COLUMN client_key_ciphertext bytea,
  ADD COLUMN client_key_nonce      bytea CHECK (client_key_nonce IS NULL OR length(client_key_nonce) = 12),
  ADD CONSTRAINT mcp_servers_client_key_pair CHECK ((client_key_ciphertext IS NULL) = (client_key_nonce IS NULL));
