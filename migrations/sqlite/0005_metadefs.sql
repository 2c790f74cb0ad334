-- Glance's metadata definition catalog (metadefs), shaped as Glance's own tables (names,
-- columns, keys and indexes as its migrations create them) so a Glance database serves as is.
CREATE TABLE IF NOT EXISTS metadef_namespaces (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    namespace VARCHAR(80) NOT NULL,
    display_name VARCHAR(80) NULL,
    description TEXT NULL,
    visibility VARCHAR(32) NULL,
    protected BOOLEAN NULL,
    owner VARCHAR(255) NOT NULL,
    created_at DATETIME NOT NULL,
    updated_at DATETIME NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS uq_metadef_namespaces_namespace ON metadef_namespaces (namespace);
CREATE INDEX IF NOT EXISTS ix_metadef_namespaces_owner ON metadef_namespaces (owner);

CREATE TABLE IF NOT EXISTS metadef_resource_types (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name VARCHAR(80) NOT NULL,
    protected BOOLEAN NOT NULL,
    created_at DATETIME NOT NULL,
    updated_at DATETIME NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS uq_metadef_resource_types_name ON metadef_resource_types (name);

CREATE TABLE IF NOT EXISTS metadef_namespace_resource_types (
    resource_type_id INT NOT NULL,
    namespace_id INT NOT NULL,
    properties_target VARCHAR(80) NULL,
    prefix VARCHAR(80) NULL,
    created_at DATETIME NOT NULL,
    updated_at DATETIME NULL,
    PRIMARY KEY (resource_type_id, namespace_id),
    FOREIGN KEY (namespace_id) REFERENCES metadef_namespaces (id),
    FOREIGN KEY (resource_type_id) REFERENCES metadef_resource_types (id)
);
CREATE INDEX IF NOT EXISTS ix_metadef_ns_res_types_namespace_id ON metadef_namespace_resource_types (namespace_id);

CREATE TABLE IF NOT EXISTS metadef_objects (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    namespace_id INT NOT NULL,
    name VARCHAR(80) NOT NULL,
    description TEXT NULL,
    required TEXT NULL,
    json_schema TEXT NOT NULL,
    created_at DATETIME NOT NULL,
    updated_at DATETIME NULL,
    FOREIGN KEY (namespace_id) REFERENCES metadef_namespaces (id)
);
CREATE UNIQUE INDEX IF NOT EXISTS uq_metadef_objects_namespace_id_name ON metadef_objects (namespace_id, name);
CREATE INDEX IF NOT EXISTS ix_metadef_objects_name ON metadef_objects (name);

CREATE TABLE IF NOT EXISTS metadef_properties (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    namespace_id INT NOT NULL,
    name VARCHAR(80) NOT NULL,
    json_schema TEXT NOT NULL,
    created_at DATETIME NOT NULL,
    updated_at DATETIME NULL,
    FOREIGN KEY (namespace_id) REFERENCES metadef_namespaces (id)
);
CREATE UNIQUE INDEX IF NOT EXISTS uq_metadef_properties_namespace_id_name ON metadef_properties (namespace_id, name);
CREATE INDEX IF NOT EXISTS ix_metadef_properties_name ON metadef_properties (name);

CREATE TABLE IF NOT EXISTS metadef_tags (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    namespace_id INT NOT NULL,
    name VARCHAR(80) NOT NULL,
    created_at DATETIME NOT NULL,
    updated_at DATETIME NULL,
    FOREIGN KEY (namespace_id) REFERENCES metadef_namespaces (id)
);
CREATE UNIQUE INDEX IF NOT EXISTS uq_metadef_tags_namespace_id_name ON metadef_tags (namespace_id, name);
CREATE INDEX IF NOT EXISTS ix_metadef_tags_name ON metadef_tags (name);
