ALTER TABLE apps DROP COLUMN git_token_sealed;
