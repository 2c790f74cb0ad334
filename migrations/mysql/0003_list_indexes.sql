-- Pages of images in their default order (created_at, then id): an index scan that stops at
-- the page's last image, even when thousands of images share a creation second (InnoDB's index
-- on created_at carries the id already; this one says so for any engine). Sorting by name has
-- no index here: MariaDB indexes no expressions.
CREATE INDEX created_at_id_image_idx ON images (created_at, id);
