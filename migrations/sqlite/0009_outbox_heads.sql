-- The head of each contact's lane: the one job of a (contact, lane) that may run now (the
-- oldest unfinished one). Claiming searched every due job and kept those with no older
-- unfinished job of their contact: with a backlog of N jobs that read N rows per claim, and
-- every write of the bridge waited behind it. A flag kept as jobs finish makes a claim read
-- only the heads that are due.
ALTER TABLE jobs ADD COLUMN head INTEGER NOT NULL DEFAULT 0;

UPDATE jobs SET head = 1
WHERE state IN ('pending', 'running')
  AND id = (SELECT MIN(e.id) FROM jobs e
            WHERE e.contact_id = jobs.contact_id AND e.lane = jobs.lane AND e.state IN ('pending', 'running'));

CREATE INDEX jobs_heads_due ON jobs (due_at) WHERE head = 1 AND state IN ('pending', 'running');

-- Each push prunes its source's expired nonces (`Store::accept`): with the index on `seen_at`
-- alone SQLite searched the primary key by `source` and visited every nonce of the retention
-- window on every push. One index on both makes the prune read only what it deletes.
CREATE INDEX webhook_nonces_by_source_age ON webhook_nonces (source, seen_at);
DROP INDEX webhook_nonces_by_age;
