"""openstacksdk against glance-rs without auth: create with data, list by tag, download and
verify, update, delete. Prints one JSON line with what it saw; the Rust test checks it."""
import hashlib
import json
import sys

import openstack

url = sys.argv[1]
conn = openstack.connect(
    auth_type="none",
    auth={"endpoint": url},
    image_endpoint_override=url,
    load_yaml_config=False,
    load_envvars=False,
)
payload = bytes(range(256)) * 4096 + b"tail"
img = conn.image.create_image(
    name="sdk-img", data=payload, disk_format="raw", container_format="bare",
    tags=["sdk"], os_distro="fedora", validate_checksum=True,
)
listed = [i.id for i in conn.image.images(tag="sdk")]
by_prop = [i.id for i in conn.image.images(os_distro="fedora")]
downloaded = conn.image.download_image(img)
content = downloaded.content if hasattr(downloaded, "content") else downloaded
conn.image.update_image(img, name="sdk-renamed", hw_disk_bus="virtio")
after = conn.image.get_image(img.id)
conn.image.delete_image(img)
gone = conn.image.find_image(img.id) is None
print(json.dumps({
    "id": img.id, "status": after.status, "size": after.size,
    "checksum_ok": after.checksum == hashlib.md5(payload).hexdigest(),
    "sha512_ok": after.hash_value == hashlib.sha512(payload).hexdigest(),
    "listed": img.id in listed, "by_prop": img.id in by_prop,
    "download_ok": content == payload, "name": after.name,
    "hw_disk_bus": getattr(after, "hw_disk_bus", None),
    "gone": gone,
}))
