ALTER TABLE apps DROP COLUMN git_provider;
DROP TABLE git_link_states;
DROP TABLE git_links;
