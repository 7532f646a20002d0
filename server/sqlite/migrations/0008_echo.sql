-- Echoes a pull leaves out (study/echo.go). echo_device is the device
-- whose pushes are the only changes to the entry since a version that
-- device had pulled, or NULL; applied_changes counts the changes of a
-- device the server holds, so that a device whose replica lacks some of
-- them (restored from a backup) is told apart.
ALTER TABLE entries ADD COLUMN echo_device INTEGER;
ALTER TABLE devices ADD COLUMN applied_changes INTEGER NOT NULL DEFAULT 0;
