"""Image and plugin records as Image Factory's REST v2 JSON."""
from imgfac_nova import images

#: Record type -> (collection, member) names in URLs and bodies.
NAMES = {images.BASE_IMAGE: ("base_images", "base_image"),
         images.TARGET_IMAGE: ("target_images", "target_image"),
         images.PROVIDER_IMAGE: ("provider_images", "provider_image")}
TYPES = {collection: kind for kind, (collection, _) in NAMES.items()}
#: The kind of image made from each kind, and the field naming its parent.
CHILD = {images.BASE_IMAGE: images.TARGET_IMAGE,
         images.TARGET_IMAGE: images.PROVIDER_IMAGE}
PARENT_FIELD = {images.TARGET_IMAGE: "base_image_id",
                images.PROVIDER_IMAGE: "target_image_id"}

#: The record fields a collection's entries need (:func:`link`, and the
#: policy's target).
LISTED = ("identifier", "type", "project_id")
_COMMON = ("status", "percent_complete", "status_detail", "template",
           "icicle", "parameters", "properties", "created", "updated")
_EXTRA = {images.BASE_IMAGE: (),
          images.TARGET_IMAGE: ("base_image_id", "target"),
          images.PROVIDER_IMAGE: ("base_image_id", "target_image_id", "target",
                                  "provider", "identifier_on_provider")}


def href(base_url, record):
    return "%s/imagefactory/%s/%s" % (base_url, NAMES[record.type][0],
                                      record.identifier)


def link(base_url, record):
    """The short form of an image in lists: ``_type``, ``id``, ``href``."""
    return {"_type": record.type, "id": record.identifier,
            "href": href(base_url, record)}


def image(base_url, record, children=()):
    """The full form of an image; ``children`` are records made from it."""
    body = link(base_url, record)
    body.update({name: getattr(record, name) for name in
                 _COMMON + _EXTRA[record.type]})
    if record.type == images.PROVIDER_IMAGE:
        body["provider_account_identifier"] = None
    for parent in ("base_image_id", "target_image_id"):
        if body.get(parent):
            body[parent[:-len("_id")]] = {
                "id": body[parent],
                "href": "%s/imagefactory/%ss/%s" % (
                    base_url, parent[:-len("_id")], body[parent])}
    child = CHILD.get(record.type)
    if child:
        plural, singular = NAMES[child]
        body[plural] = [{singular: link(base_url, c)} for c in children
                        if c.type == child]
    return body


def member(base_url, record, children=()):
    """``{"base_image": {...}}`` and so on."""
    return {NAMES[record.type][1]: image(base_url, record, children)}


def collection(base_url, kind, records):
    plural, singular = NAMES[kind]
    return {plural: [{singular: link(base_url, r)} for r in records]}


def plugin(base_url, name, cls):
    info = cls.info.to_dict()
    info.update({"_type": "plugin", "id": name,
                 "href": "%s/imagefactory/plugins/%s" % (base_url, name),
                 "parameters": [{"name": p.name, "type": p.type,
                                 "default": p.default, "secret": p.secret,
                                 "help": p.help} for p in cls.parameters]})
    return info
