-- Glance's metadata definition catalog (metadefs), shaped as Glance's own tables (names,
-- columns, keys and indexes as its migrations create them) so a Glance database serves as is.
CREATE TABLE IF NOT EXISTS metadef_namespaces (
    id INT NOT NULL AUTO_INCREMENT,
    namespace VARCHAR(80) NOT NULL,
    display_name VARCHAR(80) NULL,
    description TEXT NULL,
    visibility VARCHAR(32) NULL,
    protected BOOLEAN NULL,
    owner VARCHAR(255) NOT NULL,
    created_at DATETIME NOT NULL,
    updated_at DATETIME NULL,
    PRIMARY KEY (id),
    UNIQUE KEY uq_metadef_namespaces_namespace (namespace),
    INDEX ix_metadef_namespaces_owner (owner)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci;

CREATE TABLE IF NOT EXISTS metadef_resource_types (
    id INT NOT NULL AUTO_INCREMENT,
    name VARCHAR(80) NOT NULL,
    protected BOOLEAN NOT NULL,
    created_at DATETIME NOT NULL,
    updated_at DATETIME NULL,
    PRIMARY KEY (id),
    UNIQUE KEY uq_metadef_resource_types_name (name)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci;

CREATE TABLE IF NOT EXISTS metadef_namespace_resource_types (
    resource_type_id INT NOT NULL,
    namespace_id INT NOT NULL,
    properties_target VARCHAR(80) NULL,
    prefix VARCHAR(80) NULL,
    created_at DATETIME NOT NULL,
    updated_at DATETIME NULL,
    PRIMARY KEY (resource_type_id, namespace_id),
    INDEX ix_metadef_ns_res_types_namespace_id (namespace_id),
    FOREIGN KEY (namespace_id) REFERENCES metadef_namespaces (id),
    FOREIGN KEY (resource_type_id) REFERENCES metadef_resource_types (id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci;

CREATE TABLE IF NOT EXISTS metadef_objects (
    id INT NOT NULL AUTO_INCREMENT,
    namespace_id INT NOT NULL,
    name VARCHAR(80) NOT NULL,
    description TEXT NULL,
    required TEXT NULL,
    json_schema TEXT NOT NULL,
    created_at DATETIME NOT NULL,
    updated_at DATETIME NULL,
    PRIMARY KEY (id),
    UNIQUE KEY uq_metadef_objects_namespace_id_name (namespace_id, name),
    INDEX ix_metadef_objects_name (name),
    FOREIGN KEY (namespace_id) REFERENCES metadef_namespaces (id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci;

CREATE TABLE IF NOT EXISTS metadef_properties (
    id INT NOT NULL AUTO_INCREMENT,
    namespace_id INT NOT NULL,
    name VARCHAR(80) NOT NULL,
    json_schema TEXT NOT NULL,
    created_at DATETIME NOT NULL,
    updated_at DATETIME NULL,
    PRIMARY KEY (id),
    UNIQUE KEY uq_metadef_properties_namespace_id_name (namespace_id, name),
    INDEX ix_metadef_properties_name (name),
    FOREIGN KEY (namespace_id) REFERENCES metadef_namespaces (id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci;

CREATE TABLE IF NOT EXISTS metadef_tags (
    id INT NOT NULL AUTO_INCREMENT,
    namespace_id INT NOT NULL,
    name VARCHAR(80) NOT NULL,
    created_at DATETIME NOT NULL,
    updated_at DATETIME NULL,
    PRIMARY KEY (id),
    UNIQUE KEY uq_metadef_tags_namespace_id_name (namespace_id, name),
    INDEX ix_metadef_tags_name (name),
    FOREIGN KEY (namespace_id) REFERENCES metadef_namespaces (id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci;
