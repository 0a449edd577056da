-- Audit queries filter by policy and subject; keep them off full scans.
CREATE INDEX audit_events_policy ON audit_events (policy, id);
CREATE INDEX audit_events_subject ON audit_events (inbound_sub, id);
