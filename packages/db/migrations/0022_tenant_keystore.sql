-- A tenant's data key may be sealed under a per-tenant key-encryption key kept outside the database
-- (the keystore in the data directory) before the key provider wraps it. tenant_kek names that
-- keystore ('file:v1'); null for data keys wrapped before keystores existed (key rotation adds the
-- layer). Erasure destroys the tenant's KEK, so copies of the wrapped key in database backups no
-- longer open.
ALTER TABLE tenant_keys ADD COLUMN tenant_kek text
  CHECK (tenant_kek IS NULL OR length(tenant_kek) BETWEEN 1 AND 64);
