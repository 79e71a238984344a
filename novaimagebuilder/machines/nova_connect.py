"""Connecting to the cloud, and finding what a Nova build will use: its
flavor, its networks and (for ISO installs) Nova's stable device rescue."""
from novaimagebuilder import cloud
from novaimagebuilder import errors
from novaimagebuilder import retries

#: The first compute API microversion of the Nova release (Victoria) whose
#: libvirt driver has stable device rescue.
STABLE_RESCUE_MICROVERSION = (2, 87)


def connect(cloud_name=None, region=None, interface=None, auth=None,
            timeout=None):
    """An authenticated openstacksdk Connection, from ``clouds.yaml`` / ``OS_*``
    (the entry ``cloud_name``)
    through openstacksdk's config loader, or from ``auth`` (a keystoneauth1
    auth plugin, e.g. an API caller's token); ``timeout``: seconds any one
    HTTP request may take (None: no limit). Its requests that may be
    repeated are retried on transient failures (:mod:`retries`). Failures
    are one-line BuildErrors."""
    import openstack
    try:
        if auth is not None:
            conn = openstack.connection.Connection(
                session=retries.Session(auth=auth, timeout=timeout),
                region_name=region,
                interface=interface)
        else:
            options = {"api_timeout": timeout} if timeout else {}
            config = openstack.config.OpenStackConfig(
                load_envvars=True, session_constructor=retries.Session)
            conn = openstack.connection.Connection(config=config.get_one(
                cloud=cloud_name, region_name=region, interface=interface,
                **options))
        conn.authorize()
    except Exception as exc:
        raise errors.BuildError(cloud.explain(exc)) from None
    return conn


def find_flavor(conn, flavor):
    """The flavor named or numbered ``flavor``, or a one-line error."""
    if not flavor:
        raise errors.BuildError("the flavor parameter is required "
                                "(--parameter flavor NAME_OR_ID)")
    found = cloud.call("looking up flavor %r" % flavor, conn.compute.find_flavor,
                       flavor)
    if found is None:
        names = sorted(f.name for f in conn.compute.flavors())
        raise errors.BuildError("Nova has no flavor %r (flavors: %s)"
                                % (flavor, ", ".join(names) or "none"))
    return found


def check_stable_rescue(conn):
    """ISO installs rescue a blank server with the ISO: a one-line error
    unless the cloud's Nova has stable device rescue."""
    from keystoneauth1 import discover
    data = cloud.call("asking Nova for its API versions",
                      conn.compute.get_endpoint_data)
    top = data.max_microversion if data is not None else None
    if top is None or tuple(top) < STABLE_RESCUE_MICROVERSION:
        raise errors.BuildError(
            "ISO installs need Nova's stable device rescue (compute API "
            "microversion %s, OpenStack Victoria or later); this cloud's "
            "compute API goes up to %s" % (
                discover.version_to_string(STABLE_RESCUE_MICROVERSION),
                discover.version_to_string(top) if top else
                "2.1 (no microversions)"))


def find_networks(conn, networks):
    """The networks of a comma-separated list of names or ids, in order (a
    NIC on each, in that order); without any, ``[find_network(conn,
    None)]`` or [] when Nova may choose."""
    names = [n.strip() for n in (networks or "").split(",") if n.strip()]
    if not names:
        found = find_network(conn, None)
        return [found] if found is not None else []
    found = [find_network(conn, name) for name in names]
    ids = [n.id for n in found]
    if len(set(ids)) != len(ids):
        raise errors.BuildError("network %r names a network twice" % networks)
    return found


def find_ssh_network(conn, ssh_network, networks):
    """The network of ``ssh_network`` (name or id), which must be one of the
    build servers' ``networks``; None without one."""
    if not ssh_network:
        return None
    wanted = find_network(conn, ssh_network)
    if wanted.id not in {n.id for n in networks}:
        raise errors.BuildError(
            "ssh_network %r is not one of the build servers' networks (%s); "
            "add it to the network parameter (comma-separated)" % (
                ssh_network, ", ".join(n.name for n in networks) or
                "the one Nova chooses"))
    return wanted


def find_network(conn, network):
    """The named network; without a name, the project's only network (None
    lets Nova choose when there is none)."""
    if network:
        found = cloud.call("looking up network %r" % network,
                           conn.network.find_network, network)
        if found is None:
            raise errors.BuildError("Neutron has no network %r" % network)
        return found
    candidates = [n for n in cloud.call("listing networks", conn.network.networks)
                  if not n.is_router_external]
    own = [n for n in candidates if not n.is_shared] or candidates
    if len(own) > 1:
        raise errors.BuildError(
            "several networks could be used (%s); choose one with "
            "--parameter network NAME" % ", ".join(sorted(n.name for n in own)))
    return own[0] if own else None
