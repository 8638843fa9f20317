DROP TABLE acme_challenges;
