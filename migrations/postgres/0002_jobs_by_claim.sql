-- A claim reads its jobs' messages and contacts by its claim token (`queries::jobs::claim_on`).
-- Only running jobs carry a token (it is cleared when a job ends or waits again), so this index
-- holds the few jobs in flight, not the whole history.
CREATE INDEX jobs_by_claim ON jobs (claim_token) WHERE claim_token IS NOT NULL;
