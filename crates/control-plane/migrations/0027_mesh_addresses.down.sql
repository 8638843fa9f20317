DROP INDEX workers_wg_ip_unique;
