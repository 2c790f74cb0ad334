-- Glance's image tables, shaped as Glance's own schema so operators can read them.
CREATE TABLE IF NOT EXISTS images (
    id VARCHAR(36) NOT NULL PRIMARY KEY,
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
    visibility VARCHAR(9) NOT NULL DEFAULT 'shared',
    os_hidden BOOLEAN NOT NULL DEFAULT 0,
    os_hash_algo VARCHAR(64) NULL,
    os_hash_value VARCHAR(128) NULL
);
CREATE INDEX IF NOT EXISTS checksum_image_idx ON images (checksum);
CREATE INDEX IF NOT EXISTS ix_images_deleted ON images (deleted);
CREATE INDEX IF NOT EXISTS owner_image_idx ON images (owner);
CREATE INDEX IF NOT EXISTS created_at_image_idx ON images (created_at);
CREATE INDEX IF NOT EXISTS updated_at_image_idx ON images (updated_at);
CREATE INDEX IF NOT EXISTS visibility_image_idx ON images (visibility);
CREATE INDEX IF NOT EXISTS os_hidden_image_idx ON images (os_hidden);
CREATE INDEX IF NOT EXISTS os_hash_value_image_idx ON images (os_hash_value);

CREATE TABLE IF NOT EXISTS image_properties (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    image_id VARCHAR(36) NOT NULL,
    name VARCHAR(255) NOT NULL,
    value TEXT NULL,
    created_at DATETIME NOT NULL,
    updated_at DATETIME NULL,
    deleted_at DATETIME NULL,
    deleted BOOLEAN NOT NULL DEFAULT 0,
    FOREIGN KEY (image_id) REFERENCES images (id)
);
CREATE UNIQUE INDEX IF NOT EXISTS ix_image_properties_image_id_name ON image_properties (image_id, name);
CREATE INDEX IF NOT EXISTS ix_image_properties_deleted ON image_properties (deleted);

CREATE TABLE IF NOT EXISTS image_tags (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    image_id VARCHAR(36) NOT NULL,
    value VARCHAR(255) NOT NULL,
    created_at DATETIME NOT NULL,
    updated_at DATETIME NULL,
    deleted_at DATETIME NULL,
    deleted BOOLEAN NOT NULL DEFAULT 0,
    FOREIGN KEY (image_id) REFERENCES images (id)
);
CREATE INDEX IF NOT EXISTS ix_image_tags_image_id ON image_tags (image_id);
CREATE INDEX IF NOT EXISTS ix_image_tags_image_id_tag_value ON image_tags (image_id, value);

CREATE TABLE IF NOT EXISTS image_locations (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    image_id VARCHAR(36) NOT NULL,
    value TEXT NOT NULL,
    created_at DATETIME NOT NULL,
    updated_at DATETIME NULL,
    deleted_at DATETIME NULL,
    deleted BOOLEAN NOT NULL DEFAULT 0,
    meta_data TEXT NULL,
    status VARCHAR(30) NOT NULL DEFAULT 'active',
    FOREIGN KEY (image_id) REFERENCES images (id)
);
CREATE INDEX IF NOT EXISTS ix_image_locations_image_id ON image_locations (image_id);
CREATE INDEX IF NOT EXISTS ix_image_locations_deleted ON image_locations (deleted);

CREATE TABLE IF NOT EXISTS image_members (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    image_id VARCHAR(36) NOT NULL,
    member VARCHAR(255) NOT NULL,
    can_share BOOLEAN NOT NULL DEFAULT 0,
    created_at DATETIME NOT NULL,
    updated_at DATETIME NULL,
    deleted_at DATETIME NULL,
    deleted BOOLEAN NOT NULL DEFAULT 0,
    status VARCHAR(20) NOT NULL DEFAULT 'pending',
    FOREIGN KEY (image_id) REFERENCES images (id)
);
CREATE UNIQUE INDEX IF NOT EXISTS image_members_image_id_member_deleted_at_key ON image_members (image_id, member, deleted_at);
CREATE INDEX IF NOT EXISTS ix_image_members_image_id_member ON image_members (image_id, member);
CREATE INDEX IF NOT EXISTS ix_image_members_deleted ON image_members (deleted);

CREATE TABLE IF NOT EXISTS tasks (
    id VARCHAR(36) NOT NULL PRIMARY KEY,
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
    user_id VARCHAR(64) NULL
);
CREATE INDEX IF NOT EXISTS ix_tasks_type ON tasks (type);
CREATE INDEX IF NOT EXISTS ix_tasks_status ON tasks (status);
CREATE INDEX IF NOT EXISTS ix_tasks_owner ON tasks (owner);
CREATE INDEX IF NOT EXISTS ix_tasks_deleted ON tasks (deleted);
CREATE INDEX IF NOT EXISTS ix_tasks_image_id ON tasks (image_id);

CREATE TABLE IF NOT EXISTS task_info (
    task_id VARCHAR(36) NOT NULL,
    input TEXT NULL,
    result TEXT NULL,
    message TEXT NULL,
    PRIMARY KEY (task_id),
    FOREIGN KEY (task_id) REFERENCES tasks (id)
);
