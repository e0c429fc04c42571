-- Only heads are ever claimed, and `jobs_heads_due` orders them by due time; the index of every
-- unfinished job by due time was updated by each insert, claim and finish of a job and read by
-- nothing the heads' index cannot answer (the next due time is a head's). Counting unfinished
-- jobs uses `jobs_active_by_contact`, which has the same WHERE.
DROP INDEX jobs_active_due;
