DROP TABLE domain_certificates;
DROP TABLE acme_accounts;
