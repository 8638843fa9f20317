-- Mesh addresses (SPEC §11) are given at registration; one worker per address of the mesh
-- (loopback is shared: in single-machine mode every worker is on this machine).
CREATE UNIQUE INDEX workers_wg_ip_unique ON workers (wg_ip) WHERE wg_ip IS NOT NULL AND NOT wg_ip << '127.0.0.0/8'::inet;
