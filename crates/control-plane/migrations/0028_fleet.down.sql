ALTER TABLE apps DROP COLUMN moved_from_worker_id;
ALTER TABLE workers
    DROP COLUMN connected_to,
    DROP COLUMN offline_since,
    DROP COLUMN cpu_pct,
    DROP COLUMN mem_used_mb,
    DROP COLUMN mem_total_mb;
