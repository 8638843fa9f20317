DROP TABLE mesh_proxies;
