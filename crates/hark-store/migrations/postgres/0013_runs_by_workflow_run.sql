-- Knock's message listings take `workflow_run_id` (the id a trigger answers with), and so
-- does the run listing. No index led from it, so each such call read every run or
-- message of the environment. One entry per recipient run serves both: runs directly,
-- messages through their run's key, `(recipient_run_id, step_ref)`.
CREATE INDEX recipient_runs_workflow_run ON recipient_runs (workflow_run_id);
