-- Storage as a managed resource (issue 24): files expire (OpenAI's expires_after), batches say when their
-- output and error files expire (output_expires_after), and a sweep deletes what has expired.
ALTER TABLE files ADD COLUMN expires_at INTEGER;   -- NULL: kept until deleted
ALTER TABLE jobs ADD COLUMN output_expires_after INTEGER;  -- seconds after the output file's creation
CREATE INDEX files_expires ON files (expires_at);
CREATE INDEX files_owner ON files (owner);
