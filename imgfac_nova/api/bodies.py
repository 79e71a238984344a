"""Reading REST request bodies: an image's fields (JSON or a form), JSON
objects and templates in them, and the Builder verb a create asks for."""
import json

from imgfac_nova import images
from imgfac_nova import template as tdl
from imgfac_nova.template_xml import TemplateError
from imgfac_nova.api import router

#: Content types of a form body.
FORMS = ("application/x-www-form-urlencoded", "multipart/form-data")


def image_fields(request, member, required=True):
    """The image fields of a JSON body (``{member: {...}}``) or a form."""
    if request.content_type in FORMS:
        return {name: value.value.decode("utf-8", "replace")
                if isinstance(getattr(value, "value", None), bytes) else
                getattr(value, "value", value)
                for name, value in request.POST.items()}
    if not request.body:
        if required:
            raise router.ApiError(400, "the request has no body; send "
                                  "{\"%s\": {...}} as JSON or a form" % member)
        return {}
    if request.content_type not in ("application/json", ""):
        raise router.ApiError(415, "unsupported content type %s (send JSON "
                              "or a form)" % request.content_type)
    try:
        body = json.loads(request.body)
    except ValueError as exc:
        raise router.ApiError(400, "the body is not JSON: %s" % exc) from None
    fields = body.get(member, body) if isinstance(body, dict) else None
    if not isinstance(fields, dict):
        raise router.ApiError(400, "the body must be {\"%s\": {...}}" % member)
    return fields


def json_object(value, name):
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError as exc:
            raise router.ApiError(400, "%s is not JSON: %s" % (name, exc)) \
                from None
    if not isinstance(value, dict):
        raise router.ApiError(400, "%s must be a JSON object" % name)
    return value


def parse_template(text, limits):
    if not text:
        return None
    try:
        return tdl.parse_template(text, source="template", limits=limits)
    except TemplateError as exc:
        where = ":".join(str(n) for n in (exc.line, exc.column) if n)
        raise router.ApiError(400, "template%s: %s" % (
            ":" + where if where else "", exc.message)) from None


def require(fields, *names):
    missing = [n for n in names if not fields.get(n)]
    if missing:
        raise router.ApiError(400, "missing %s" % ", ".join(missing))
    return [fields[n] for n in names]


def verb(kind, fields, values, template, ids, snapshot):
    """The Builder verb call that makes an image of ``kind``."""
    if kind == images.BASE_IMAGE:
        if template is None:
            raise router.ApiError(400, "missing template")
        return lambda b: b.base_image(template, values)
    if kind == images.TARGET_IMAGE:
        (target,) = require(fields, "target")
        if bool(ids["base_image_id"]) == bool(template):
            raise router.ApiError(400, "give base_image_id or template, "
                                  "not both or neither")
        return lambda b: b.target_image(target, values,
                                        base_id=ids["base_image_id"],
                                        template=template)
    target, provider, credentials = require(fields, "target", "provider",
                                            "credentials")
    source = ids["target_image_id"] or ids["base_image_id"]
    if snapshot and template is None:
        raise router.ApiError(400, "parameters.snapshot builds from a "
                              "template: give template")
    if not snapshot and bool(source) == bool(template):
        raise router.ApiError(400, "give target_image_id, base_image_id or "
                              "template (one of them)")
    return lambda b: b.provider_image(target, provider, credentials, values,
                                      image_id=source, template=template,
                                      snapshot=snapshot)
