-- Pages of images in their default order (created_at, then id) and sorted by name: with these
-- a page is an index scan that stops at its last image, even when thousands of images share
-- a creation second (a bulk import); without them SQLite sorted every image for each page.
CREATE INDEX IF NOT EXISTS created_at_id_image_idx ON images (created_at, id);
CREATE INDEX IF NOT EXISTS name_created_at_id_image_idx ON images (COALESCE(name, ''), created_at, id);
