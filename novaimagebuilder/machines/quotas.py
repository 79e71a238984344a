"""The project's quotas, checked before a build creates anything.

A build holds at one time one server (its flavor's vCPUs and RAM, a port on
each of its networks), one keypair, its own security group (with Neutron's
two default egress rules and at least one SSH rule) unless it is given
groups, and a floating IP when asked. :func:`for_build` lists those
:class:`Need` s; :func:`check` reads each service's quotas once (Nova's
absolute limits and keypairs, Neutron's quota details, Cinder's quota set
with usage) and fails in one line naming every quota that is short. A
service whose quotas these credentials may not read is not checked: the
create's own answer ("Quota exceeded", one line too) says it then.

To check another resource, add its Need (a volume-backed build: Cinder's
``volumes`` and ``gigabytes``); a new service needs a reader in READERS.
"""
import dataclasses
import logging

from novaimagebuilder import cloud
from novaimagebuilder import errors

LOG = logging.getLogger(__name__)

#: Names of the quotas in messages, by (service, resource).
LABELS = {
    ("compute", "instances"): "instances",
    ("compute", "cores"): "cores",
    ("compute", "ram"): "RAM (MiB)",
    ("compute", "key_pairs"): "keypairs",
    ("network", "ports"): "ports",
    ("network", "security_groups"): "security groups",
    ("network", "security_group_rules"): "security group rules",
    ("network", "floating_ips"): "floating IPs",
    ("volume", "volumes"): "volumes",
    ("volume", "gigabytes"): "volume gigabytes",
}
SERVICES = {"compute": "Nova", "network": "Neutron", "volume": "Cinder"}
#: Rules Neutron puts in a new security group (egress, IPv4 and IPv6).
DEFAULT_RULES = 2


@dataclasses.dataclass(frozen=True)
class Need:
    """``amount`` of the ``resource`` quota of ``service`` (a READERS key)."""

    service: str
    resource: str
    amount: int


def for_build(flavor, ports=1, keypair=True, security_group=True,
              floating_ip=False, volume_gb=0):
    """What a build with ``flavor`` holds at once: a server with ``ports``
    NICs, a keypair, its own security group, a floating IP, and a volume of
    ``volume_gb`` GiB when it is volume-backed."""
    needs = [Need("compute", "instances", 1),
             Need("compute", "cores", flavor.vcpus),
             Need("compute", "ram", flavor.ram),
             Need("network", "ports", ports)]
    if keypair:
        needs.append(Need("compute", "key_pairs", 1))
    if security_group:
        needs += [Need("network", "security_groups", 1),
                  Need("network", "security_group_rules", DEFAULT_RULES + 1)]
    if floating_ip:
        needs.append(Need("network", "floating_ips", 1))
    if volume_gb:
        needs += [Need("volume", "volumes", 1),
                  Need("volume", "gigabytes", volume_gb)]
    return needs


def check(conn, needs, log=None):
    """Fail in one line (a BuildError) when a quota leaves less than a need
    of ``needs``; quotas that cannot be read are logged and skipped."""
    log = log or LOG
    short = []
    for service in sorted({need.service for need in needs}):
        try:
            quotas = READERS[service](conn)
        except Exception as exc:
            log.info("Not checking %s's quotas before the build: %s",
                     SERVICES[service], cloud.explain(exc))
            continue
        for need in needs:
            if need.service != service or need.resource not in quotas:
                continue
            limit, used = quotas[need.resource]
            if limit is None or limit < 0:
                continue  # unlimited
            left = max(0, limit - used)
            if need.amount > left:
                short.append("%s %s: %d of %d left, the build needs %d" % (
                    SERVICES[service], LABELS[service, need.resource], left,
                    limit, need.amount))
    if short:
        raise errors.BuildError("the project's quota is too small for this "
                                "build: %s" % "; ".join(short))


def _compute(conn):
    absolute = conn.compute.get_limits().absolute
    # Keypairs are counted per user; the limits do not say how many exist.
    keypairs = sum(1 for _ in conn.compute.keypairs())
    return {"instances": (absolute.instances, absolute.instances_used),
            "cores": (absolute.total_cores, absolute.total_cores_used),
            "ram": (absolute.total_ram, absolute.total_ram_used),
            "key_pairs": (absolute.keypairs, keypairs)}


def _network(conn):
    quota = conn.network.get_quota(conn.current_project_id, details=True)
    found = {}
    for name in ("ports", "security_groups", "security_group_rules",
                 "floating_ips"):
        detail = getattr(quota, name, None)
        if isinstance(detail, dict) and "limit" in detail:
            found[name] = (detail["limit"], detail.get("used", 0) +
                           detail.get("reserved", 0))
    return found


def _volume(conn):
    quota = conn.block_storage.get_quota_set(conn.current_project_id,
                                             usage=True)
    usage, reserved = quota.usage or {}, quota.reservation or {}
    return {name: (getattr(quota, name), usage.get(name, 0) +
                   reserved.get(name, 0))
            for name in ("volumes", "gigabytes")}


READERS = {"compute": _compute, "network": _network, "volume": _volume}
