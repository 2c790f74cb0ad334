"""openstacksdk as a service (Nova, Cinder) of project p1 would use it, without auth: create an
image, add an http location with the locations API (v2.17), wait for the background hashing;
then, as the admin, list the tasks. Prints one JSON line with what it saw; the Rust test checks it."""
import json
import sys
import time

import openstack
from keystoneauth1 import noauth, session

url, location = sys.argv[1], sys.argv[2]
sess = session.Session(
    auth=noauth.NoAuth(endpoint=url),
    additional_headers={"X-Project-Id": "p1", "X-Roles": "member,reader,service"},
)
conn = openstack.connection.Connection(
    session=sess, image_endpoint_override=url,
)
img = conn.image.create_image(name="sdk-loc", disk_format="raw", container_format="bare")
conn.image.add_image_location(img, location, validation_data={})
deadline = time.time() + 60
while True:
    shown = conn.image.get_image(img.id)
    if shown.checksum or time.time() > deadline:
        break
    time.sleep(0.2)
# The tasks API is the admin's (tasks_api_access): noauth without identity headers.
admin = openstack.connect(
    auth_type="none", auth={"endpoint": url}, image_endpoint_override=url,
    load_yaml_config=False, load_envvars=False,
)
tasks = [t for t in admin.image.tasks() if t.type == "location_import"]
print(json.dumps({
    "id": img.id, "status": shown.status, "size": shown.size, "checksum": shown.checksum,
    "hash_algo": shown.hash_algo, "hash_value": shown.hash_value,
    # A listing leaves input and result out, as Glance's does: shown one by one.
    "tasks": [{"status": t.status, "input": admin.image.get_task(t.id).input} for t in tasks],
}))
