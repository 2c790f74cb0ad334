-- Pages sorted by name ascending: Glance appends created_at and id in descending order, so the
-- index of 0003 (all ascending) orders only the name; with a filter (a property, a tag) SQLite
-- then read and sorted every image for each page. This one is the page's exact order.
CREATE INDEX IF NOT EXISTS name_asc_created_at_desc_image_idx ON images (COALESCE(name, ''), created_at DESC, id DESC);
