-- Webhook secrets can be rotated: the secret is derived from the master key, the tenant, the hook
-- and its version (version 1 is the original derivation); the previous version keeps working until
-- previous_valid_until, so senders can switch without losing deliveries.
ALTER TABLE webhooks ADD COLUMN secret_version integer NOT NULL DEFAULT 1 CHECK (secret_version >= 1);
ALTER TABLE webhooks ADD COLUMN previous_valid_until timestamptz;
