-- A text edit of a body or feedback body (a Change's TextEdit) is kept in
-- the history as its canonical encoding (syncengine.EncodeTextChange);
-- text_value and int_value are then NULL. Whole values keep their columns.
ALTER TABLE history ADD COLUMN text_change bytea;
