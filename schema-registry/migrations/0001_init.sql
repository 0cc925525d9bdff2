-- Schemas are global: one row per distinct canonical form, so the same schema gets the same id in every subject.
CREATE TABLE registry.schemas (
    id          SERIAL PRIMARY KEY,
    schema_type TEXT NOT NULL DEFAULT 'AVRO',
    canonical   TEXT NOT NULL UNIQUE,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE registry.subject_versions (
    subject    TEXT NOT NULL,
    version    INT NOT NULL CHECK (version > 0),
    schema_id  INT NOT NULL REFERENCES registry.schemas (id),
    deleted    BOOLEAN NOT NULL DEFAULT false,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (subject, version)
);
CREATE INDEX subject_versions_schema_id ON registry.subject_versions (schema_id);

-- Compatibility level per subject; the empty subject holds the global level.
CREATE TABLE registry.config (
    subject       TEXT PRIMARY KEY,
    compatibility TEXT NOT NULL
);
