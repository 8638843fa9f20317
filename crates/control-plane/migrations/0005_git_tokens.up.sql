-- A repository access token per app (private repositories), sealed like env values.
ALTER TABLE apps ADD COLUMN git_token_sealed TEXT;
