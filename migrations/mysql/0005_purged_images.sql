-- Ids of image rows removed by `db purge_images_table`: an image id is never reused
-- (OSSN-0075), so a create naming one of these is refused as if the row were still there.
CREATE TABLE IF NOT EXISTS glance_rs_purged_images (
    id VARCHAR(36) NOT NULL,
    purged_at DATETIME NOT NULL,
    PRIMARY KEY (id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci;
