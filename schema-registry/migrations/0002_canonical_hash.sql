-- A b-tree entry holds at most about 2.7 kB, so a unique index on the full canonical text refused larger schemas
-- with an error. Schemas are identified by the SHA-256 of their canonical text instead.
ALTER TABLE registry.schemas DROP CONSTRAINT schemas_canonical_key;
ALTER TABLE registry.schemas ADD COLUMN canonical_sha256 BYTEA;
UPDATE registry.schemas SET canonical_sha256 = sha256(convert_to(canonical, 'UTF8'));
ALTER TABLE registry.schemas ALTER COLUMN canonical_sha256 SET NOT NULL;
CREATE UNIQUE INDEX schemas_canonical_sha256 ON registry.schemas (canonical_sha256);
