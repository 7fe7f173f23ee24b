-- A message's status and a run's cursor change within milliseconds of the insert, when
-- the row's page has usually filled up with newer rows. The new row version then goes
-- to another page and every index gets a new entry: six for a message, four for a run.
-- Leaving a quarter of each page free lets most of these updates stay on the page
-- (heap-only tuples), which touches no index because no indexed column changes.
ALTER TABLE messages SET (fillfactor = 60);
ALTER TABLE recipient_runs SET (fillfactor = 60);
