"""What Nova said when a server went to ERROR, in one line.

A server in ERROR carries Nova's fault: its ``message`` (the details, a
traceback, are for admins only). "No valid host" says no more than that the
scheduler found no compute host, so the line adds what was to be placed: the
flavor's vCPUs, RAM and disk (and its extra specs), the image's scheduling
properties and the traits required; and, when these credentials may read
placement (an admin's), which of it no compute host has free.
"""
import logging
import math

from novaimagebuilder import errors

LOG = logging.getLogger(__name__)

NO_VALID_HOST = "no valid host"
#: Image properties the scheduler reads (hw_* and img_* for the NUMA, CPU and
#: device filters, traits:*, and the ImagePropertiesFilter's own).
_SCHEDULING_PREFIXES = ("hw_", "img_", "traits:")
_SCHEDULING_PROPERTIES = ("architecture", "hypervisor_type", "vm_mode",
                          "hw_vm_mode")
#: Placement's resource classes of a flavor, with their unit in messages.
_UNITS = {"VCPU": "vCPU", "MEMORY_MB": "MiB RAM", "DISK_GB": "GiB disk"}


def server_error(server, conn=None):
    """One line for a server (an openstacksdk Server) in ERROR: Nova's fault
    message, and for "No valid host" what could not be placed (with ``conn``
    to read the image and placement)."""
    fault = server.fault or {}
    lines = (fault.get("message") or "").strip().splitlines()
    message = lines[0].strip() if lines else "no fault message"
    text = "Nova put the server in ERROR: %s" % message
    if conn is None or NO_VALID_HOST not in message.lower():
        return text
    try:
        why = unplaceable(conn, server)
    except Exception as exc:  # the fault itself is what matters
        LOG.info("Could not say why server %s could not be placed: %s",
                 server.id, exc)
        return text
    return "%s %s" % (text.rstrip(". "), why)


def unplaceable(conn, server):
    """"(flavor 'x': ...; image properties ...; required traits ...): no
    compute host has ..." for a server Nova found no host for."""
    flavor = server.flavor
    if flavor is None or not flavor.ram:  # before compute API 2.47
        flavor = conn.compute.get_flavor(server.flavor_id or flavor.id)
    resources = requested_resources(flavor)
    specs = dict(flavor.extra_specs or {})
    properties = _image_properties(conn, server)
    traits = sorted(name.split(":", 1)[1] for name, value in
                    list(specs.items()) + list(properties.items())
                    if name.startswith(("trait:", "traits:"))
                    and value == "required")
    asked = ["flavor %r: %s" % (flavor.name or flavor.original_name,
                                _amounts(resources))]
    if specs:
        asked.append("extra specs %s" % _pairs(specs))
    asked.append("image properties %s" % (_pairs(properties) or "none that "
                                          "the scheduler reads"))
    if traits:
        asked.append("required traits %s" % ", ".join(traits))
    return "(%s): %s" % ("; ".join(asked), short_of(conn, resources, traits))


def requested_resources(flavor):
    """Placement resources a flavor asks for, as Nova computes them: VCPU,
    MEMORY_MB, DISK_GB (root + ephemeral + swap), overridden or added to by
    ``resources:CLASS`` extra specs."""
    resources = {"VCPU": flavor.vcpus, "MEMORY_MB": flavor.ram,
                 "DISK_GB": (flavor.disk or 0) + (flavor.ephemeral or 0) +
                 math.ceil((flavor.swap or 0) / 1024)}
    for name, value in (flavor.extra_specs or {}).items():
        if name.startswith("resources:") and str(value).isdigit():
            resources[name.split(":", 1)[1]] = int(value)
    return {name: amount for name, amount in resources.items() if amount}


def check_placeable(conn, flavor, log=None):
    """Before a build creates anything: a one-line BuildError when placement
    (readable by these credentials: an admin's) shows that no compute host
    can place ``flavor``; without access to placement, nothing is said."""
    resources = requested_resources(flavor)
    traits = sorted(name.split(":", 1)[1]
                    for name, value in (flavor.extra_specs or {}).items()
                    if name.startswith("trait:") and value == "required")
    try:
        providers = _providers(conn)
    except Exception as exc:  # not an admin, no placement: Nova will say
        (log or LOG).info("Not checking placement before the build: %s",
                          (str(exc).splitlines() or [type(exc).__name__])[0])
        return
    short = _short(providers, resources, traits)
    if short:
        raise errors.BuildError(
            "no compute host can place flavor %r (%s): no compute host has %s"
            % (flavor.name, _amounts(resources), " or ".join(short)))


def short_of(conn, resources, traits):
    """What no compute host has of ``resources`` / ``traits``, from
    placement; or why that cannot be said."""
    from openstack import exceptions as sdk
    try:
        providers = _providers(conn)
    except sdk.ForbiddenException:
        return ("these credentials may not read placement, where the "
                "cloud's administrator can see which resource is short")
    short = _short(providers, resources, traits)
    if not short:
        return ("each resource is free on some host, but no host has all of "
                "them (or a scheduler filter refused)")
    return "no compute host has " + " or ".join(short)


def _short(providers, resources, traits):
    """What none of ``providers`` has: phrases, [] when each is somewhere."""
    short = []
    for name, amount in sorted(resources.items()):
        most = max((free.get(name, 0) for free, _ in providers), default=0)
        if amount > most:
            short.append("%d %s free (the most is %d)" % (
                amount, _UNITS.get(name, name), most))
    missing = [t for t in traits
               if not any(t in have for _, have in providers)]
    if missing:
        short.append("the traits %s" % ", ".join(missing))
    return short


def _providers(conn):
    """``[(free amount by resource class, traits)]`` of each resource
    provider: free is (total - reserved) * allocation ratio - used, at most
    max_unit."""
    found = []
    listed = conn.placement.get("/resource_providers", microversion="1.6")
    _raise_for(listed)
    for provider in listed.json()["resource_providers"]:
        base = "/resource_providers/%s" % provider["uuid"]
        parts = {}
        for part in ("inventories", "usages", "traits"):
            answer = conn.placement.get("%s/%s" % (base, part),
                                        microversion="1.6")
            _raise_for(answer)
            parts[part] = answer.json()
        used = parts["usages"]["usages"]
        free = {}
        for name, inventory in parts["inventories"]["inventories"].items():
            capacity = int((inventory["total"] - inventory["reserved"]) *
                           inventory["allocation_ratio"])
            free[name] = max(0, min(inventory["max_unit"],
                                    capacity - used.get(name, 0)))
        found.append((free, set(parts["traits"]["traits"])))
    return found


def _raise_for(response):
    from openstack import exceptions as sdk
    sdk.raise_from_response(response)


def _image_properties(conn, server):
    """The scheduling properties of the server's image ({} when it booted
    from a volume or the image is gone)."""
    image_id = server.image.id if server.image else None
    if not image_id:
        return {}
    answer = conn.image.get("/images/%s" % image_id)
    if answer.status_code == 404:
        return {}
    _raise_for(answer)
    return {name: value for name, value in answer.json().items()
            if name.startswith(_SCHEDULING_PREFIXES)
            or name in _SCHEDULING_PROPERTIES}


def _amounts(resources):
    return ", ".join("%d %s" % (amount, _UNITS.get(name, name))
                     for name, amount in resources.items())


def _pairs(mapping):
    return ", ".join("%s=%s" % item for item in sorted(mapping.items()))
