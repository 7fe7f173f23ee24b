-- One index entry fewer for every job inserted and deleted: every query that finds jobs
-- by ref_id also names their kind, which jobs_kind_ref (kind, ref_id) serves.
DROP INDEX jobs_ref;
