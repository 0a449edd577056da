-- With audit_journal_dir set, a replica's local journal is the durable write of its audit
-- records and this table their index, fed in batches. Rows stay whole here (other replicas
-- cannot read this replica's journal); journal_position is never set on PostgreSQL.
ALTER TABLE audit_events ADD COLUMN journal_position BIGINT;
-- How far each replica's journal has been indexed, written in the same transaction as the
-- rows, so nothing is indexed twice or skipped.
CREATE TABLE audit_journal_marks (
    journal_id       TEXT   PRIMARY KEY,
    indexed_through  BIGINT NOT NULL
);
