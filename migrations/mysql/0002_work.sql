-- Work that outlives a request (an upload in progress, later imports, copies, location
-- hashing): a row per piece of work, leased by the node doing it. A node renews its leases
-- while it works; a lease that expires (the node died or hung) lets any node take the work
-- over and finish or undo it. glance-rs's own table: Glance's tasks table shows only tasks.
CREATE TABLE IF NOT EXISTS glance_rs_work (
    id VARCHAR(36) NOT NULL,
    kind VARCHAR(32) NOT NULL,
    image_id VARCHAR(36) NULL,
    node VARCHAR(255) NOT NULL,
    -- Milliseconds since the epoch, by the holder's clock.
    lease_until BIGINT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    payload TEXT NOT NULL,
    created_at DATETIME NOT NULL,
    PRIMARY KEY (id),
    INDEX ix_glance_rs_work_lease_until (lease_until),
    INDEX ix_glance_rs_work_image_id (image_id),
    INDEX ix_glance_rs_work_node (node)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci;
