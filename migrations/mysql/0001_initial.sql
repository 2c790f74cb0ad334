-- Glance's image tables, shaped as Glance's own schema so operators can read them.
CREATE TABLE IF NOT EXISTS images (
    id VARCHAR(36) NOT NULL,
    name VARCHAR(255) NULL,
    size BIGINT NULL,
    status VARCHAR(30) NOT NULL,
    created_at DATETIME NOT NULL,
    updated_at DATETIME NULL,
    deleted_at DATETIME NULL,
    deleted BOOLEAN NOT NULL DEFAULT 0,
    disk_format VARCHAR(20) NULL,
    container_format VARCHAR(20) NULL,
    checksum VARCHAR(32) NULL,
    owner VARCHAR(255) NULL,
    min_disk INT NOT NULL DEFAULT 0,
    min_ram INT NOT NULL DEFAULT 0,
    protected BOOLEAN NOT NULL DEFAULT 0,
    virtual_size BIGINT NULL,
    visibility ENUM('private','public','shared','community') NOT NULL DEFAULT 'shared',
    os_hidden BOOLEAN NOT NULL DEFAULT 0,
    os_hash_algo VARCHAR(64) NULL,
    os_hash_value VARCHAR(128) NULL,
    PRIMARY KEY (id),
    INDEX checksum_image_idx (checksum),
    INDEX ix_images_deleted (deleted),
    INDEX owner_image_idx (owner),
    INDEX created_at_image_idx (created_at),
    INDEX updated_at_image_idx (updated_at),
    INDEX visibility_image_idx (visibility),
    INDEX os_hidden_image_idx (os_hidden),
    INDEX os_hash_value_image_idx (os_hash_value)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci;

CREATE TABLE IF NOT EXISTS image_properties (
    id INT NOT NULL AUTO_INCREMENT,
    image_id VARCHAR(36) NOT NULL,
    name VARCHAR(255) NOT NULL,
    value TEXT NULL,
    created_at DATETIME NOT NULL,
    updated_at DATETIME NULL,
    deleted_at DATETIME NULL,
    deleted BOOLEAN NOT NULL DEFAULT 0,
    PRIMARY KEY (id),
    UNIQUE KEY ix_image_properties_image_id_name (image_id, name),
    INDEX ix_image_properties_deleted (deleted),
    CONSTRAINT image_properties_ibfk_1 FOREIGN KEY (image_id) REFERENCES images (id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci;

CREATE TABLE IF NOT EXISTS image_tags (
    id INT NOT NULL AUTO_INCREMENT,
    image_id VARCHAR(36) NOT NULL,
    value VARCHAR(255) NOT NULL,
    created_at DATETIME NOT NULL,
    updated_at DATETIME NULL,
    deleted_at DATETIME NULL,
    deleted BOOLEAN NOT NULL DEFAULT 0,
    PRIMARY KEY (id),
    INDEX ix_image_tags_image_id (image_id),
    INDEX ix_image_tags_image_id_tag_value (image_id, value),
    CONSTRAINT image_tags_ibfk_1 FOREIGN KEY (image_id) REFERENCES images (id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci;

CREATE TABLE IF NOT EXISTS image_locations (
    id INT NOT NULL AUTO_INCREMENT,
    image_id VARCHAR(36) NOT NULL,
    value TEXT NOT NULL,
    created_at DATETIME NOT NULL,
    updated_at DATETIME NULL,
    deleted_at DATETIME NULL,
    deleted BOOLEAN NOT NULL DEFAULT 0,
    meta_data TEXT NULL,
    status VARCHAR(30) NOT NULL DEFAULT 'active',
    PRIMARY KEY (id),
    INDEX ix_image_locations_image_id (image_id),
    INDEX ix_image_locations_deleted (deleted),
    CONSTRAINT image_locations_ibfk_1 FOREIGN KEY (image_id) REFERENCES images (id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci;

CREATE TABLE IF NOT EXISTS image_members (
    id INT NOT NULL AUTO_INCREMENT,
    image_id VARCHAR(36) NOT NULL,
    member VARCHAR(255) NOT NULL,
    can_share BOOLEAN NOT NULL DEFAULT 0,
    created_at DATETIME NOT NULL,
    updated_at DATETIME NULL,
    deleted_at DATETIME NULL,
    deleted BOOLEAN NOT NULL DEFAULT 0,
    status VARCHAR(20) NOT NULL DEFAULT 'pending',
    PRIMARY KEY (id),
    UNIQUE KEY image_members_image_id_member_deleted_at_key (image_id, member, deleted_at),
    INDEX ix_image_members_image_id_member (image_id, member),
    INDEX ix_image_members_deleted (deleted),
    CONSTRAINT image_members_ibfk_1 FOREIGN KEY (image_id) REFERENCES images (id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci;

CREATE TABLE IF NOT EXISTS tasks (
    id VARCHAR(36) NOT NULL,
    type VARCHAR(30) NOT NULL,
    status VARCHAR(30) NOT NULL,
    owner VARCHAR(255) NOT NULL,
    expires_at DATETIME NULL,
    created_at DATETIME NOT NULL,
    updated_at DATETIME NULL,
    deleted_at DATETIME NULL,
    deleted BOOLEAN NOT NULL DEFAULT 0,
    image_id VARCHAR(36) NULL,
    request_id VARCHAR(64) NULL,
    user_id VARCHAR(64) NULL,
    PRIMARY KEY (id),
    INDEX ix_tasks_type (type),
    INDEX ix_tasks_status (status),
    INDEX ix_tasks_owner (owner),
    INDEX ix_tasks_deleted (deleted),
    INDEX ix_tasks_image_id (image_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci;

CREATE TABLE IF NOT EXISTS task_info (
    task_id VARCHAR(36) NOT NULL,
    input TEXT NULL,
    result TEXT NULL,
    message TEXT NULL,
    PRIMARY KEY (task_id),
    CONSTRAINT task_info_ibfk_1 FOREIGN KEY (task_id) REFERENCES tasks (id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci;
