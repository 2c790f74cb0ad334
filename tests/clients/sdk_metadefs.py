"""openstacksdk's metadef calls as an admin (noauth): a namespace with a property, an object,
a tag and an association made, read back, changed and removed, and the ten schemas fetched.
Prints one JSON line with what it saw; the Rust test checks it."""
import json
import sys

import openstack

url = sys.argv[1]
conn = openstack.connect(
    auth_type="none", auth={"endpoint": url}, image_endpoint_override=url,
    load_yaml_config=False, load_envvars=False,
)
img = conn.image
ns = img.create_metadef_namespace(namespace="SDK::Test", display_name="SDK", visibility="public")
img.create_metadef_property(ns, name="speed", title="Speed", type="integer", minimum=1)
img.create_metadef_object(ns, name="disk", description="a disk")
img.add_tag_to_metadef_namespace(ns, "fast")
img.create_metadef_resource_type_association(ns, name="OS::Glance::Image", prefix="sdk_")
img.update_metadef_namespace(ns, description="changed")
shown = img.get_metadef_namespace("SDK::Test")
seen = {
    "listed": [n.namespace for n in img.metadef_namespaces()],
    "description": shown.description,
    "properties": sorted(p.name for p in img.metadef_properties(ns)),
    "objects": [o.name for o in img.metadef_objects(ns)],
    "tags": [t["name"] for t in shown.tags or []],
    "associations": [a.name for a in img.metadef_resource_type_associations(ns)],
    "types": sorted(t.name for t in img.metadef_resource_types()),
    "schemas": [s.name for s in (
        img.get_metadef_namespace_schema(), img.get_metadef_namespaces_schema(),
        img.get_metadef_object_schema(), img.get_metadef_objects_schema(),
        img.get_metadef_property_schema(), img.get_metadef_properties_schema(),
        img.get_metadef_tag_schema(), img.get_metadef_tags_schema(),
        img.get_metadef_resource_type_schema(), img.get_metadef_resource_types_schema())],
}
img.delete_metadef_property(ns, "speed")
img.delete_metadef_object(ns, "disk")
img.delete_metadef_resource_type_association(ns, "OS::Glance::Image")
img.delete_metadef_namespace(ns)
seen["after"] = [n.namespace for n in img.metadef_namespaces()]
print(json.dumps(seen))
