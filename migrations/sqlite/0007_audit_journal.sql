-- The audit journal is the durable write of each record; this table becomes its index.
-- A record indexed from the journal keeps here only what queries filter on and where the
-- journal holds it (journal_position); the rest is read from the journal. Rows written
-- before the journal existed keep every column and no position.
ALTER TABLE audit_events ADD COLUMN journal_position INTEGER;
-- How far each journal has been indexed: records up to and including indexed_through are
-- in audit_events. Written in the same transaction as the rows, so nothing is indexed
-- twice or skipped.
CREATE TABLE audit_journal_marks (
    journal_id       TEXT    PRIMARY KEY,
    indexed_through  INTEGER NOT NULL
);
