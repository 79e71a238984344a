"""Finding every cloud resource tagged with a build id, and removing the ones
no build keeps (a sweep)."""
import logging

from novaimagebuilder import cloud
from novaimagebuilder.machines import nova_servers
from novaimagebuilder.machines import nova_volumes
from novaimagebuilder import sweep
from novaimagebuilder import waiter

LOG = logging.getLogger(__name__)

#: Seconds a deletion refused as "in use" (HTTP 409) is retried.
CONFLICT_TIMEOUT = 30


def leftovers(conn):
    """Every resource tagged with a build id, as :class:`sweep.Leftover`
    objects (results and JEOS cache entries included, with their role; active
    install media, which builds share, are not; an interrupted upload is).
    A build's owner, read from any of its resources, is given to all of them
    (keypairs carry no tags)."""
    found = []
    servers = {}
    for server in conn.compute.servers():
        metadata = server.metadata or {}
        build = metadata.get(cloud.BUILD_TAG)
        if build:
            servers[server.id] = build
            found.append(sweep.Leftover(build, "server", server.id,
                                        server.name,
                                        owner=metadata.get(cloud.OWNER_TAG),
                                        created=server.created_at))
    for ip in conn.network.ips():
        build = _tag(ip, cloud.BUILD_TAG)
        if build:
            found.append(sweep.Leftover(build, "floating IP", ip.id,
                                        ip.floating_ip_address,
                                        owner=_tag(ip, cloud.OWNER_TAG),
                                        created=ip.created_at))
    groups = {}
    for group in conn.network.security_groups():
        build = _tag(group, cloud.BUILD_TAG)
        if build:
            groups[group.id] = sweep.Leftover(build, "security group",
                                              group.id, group.name,
                                              owner=_tag(group, cloud.OWNER_TAG),
                                              created=group.created_at)
    found += _ports(conn, servers, groups)
    found += groups.values()
    for keypair in conn.compute.keypairs():
        name = keypair.name
        if name.startswith(cloud.NAME_PREFIX) and name.endswith("-key"):
            found.append(sweep.Leftover(name[len(cloud.NAME_PREFIX):-len("-key")],
                                        "keypair", name, name))
    if nova_volumes.has_volumes(conn):
        found += _volumes(conn)
    roles = {"image": sweep.RESULT, sweep.JEOS_CACHE: sweep.JEOS_CACHE}
    for image in conn.image.images():
        props = image.properties or {}
        build = props.get(cloud.BUILD_TAG)
        if props.get(cloud.ROLE) == "media" and image.status == "active":
            continue  # the shared media cache; only a broken upload is left
        if build:
            found.append(sweep.Leftover(build, "image", image.id, image.name,
                                        role=roles.get(props.get(cloud.ROLE)),
                                        owner=props.get(cloud.OWNER_TAG),
                                        created=image.created_at))
    return sweep.with_owners(found)


def _volumes(conn):
    """Tagged volumes, and their snapshots and tagged ones (a snapshot
    keeps its volume from being deleted)."""
    found = []
    volumes = {}
    for volume in conn.block_storage.volumes():
        metadata = volume.metadata or {}
        build = metadata.get(cloud.BUILD_TAG)
        if build:
            volumes[volume.id] = build
            found.append(sweep.Leftover(build, "volume", volume.id,
                                        volume.name or volume.id,
                                        owner=metadata.get(cloud.OWNER_TAG),
                                        created=volume.created_at))
    for snapshot in conn.block_storage.snapshots():
        metadata = snapshot.metadata or {}
        build = metadata.get(cloud.BUILD_TAG) or volumes.get(snapshot.volume_id)
        if build:
            found.append(sweep.Leftover(build, "volume snapshot",
                                        snapshot.id,
                                        snapshot.name or snapshot.id,
                                        owner=metadata.get(cloud.OWNER_TAG),
                                        created=snapshot.created_at))
    return found


def _tag(resource, name):
    """The value of a Neutron resource's ``name=value`` tag, or None."""
    for tag in resource.tags or ():
        if tag.startswith(name + "="):
            return tag[len(name) + 1:]
    return None


def _ports(conn, servers, groups):
    """Ports of tagged servers, tagged ports, and ports that hold a tagged
    security group for a server that is gone: a port keeps its security
    groups until Neutron removes it."""
    found = []
    for port in conn.network.ports():
        build = _tag(port, cloud.BUILD_TAG) or servers.get(port.device_id)
        if not build and not port.device_id:
            build = next((groups[g].build for g in port.security_group_ids
                          or () if g in groups), None)
        if build:
            found.append(sweep.Leftover(build, "port", port.id,
                                        port.name or port.id))
    return found


def sweep_cloud(conn, protected, dry_run=False, log=None):
    """Remove the :func:`leftovers` that ``protected`` does not keep, in one
    pass: servers (waiting until each is gone), then floating IPs, ports,
    security groups, keypairs, volumes and images. Returns the Outcomes; after
    removing, anything it removed that is still listed is an Outcome with an
    error too. What is new in that listing (a build that ended or was killed
    meanwhile, which another sweep may be removing) is left to the next
    sweep."""
    from openstack import exceptions as sdk
    log = log or LOG

    def delete(function, **kwargs):
        def start(leftover):
            # A conflict ("in use") may clear once Neutron or Nova has caught
            # up with the removals before it.
            last = {"error": None}
            for _ in waiter.iterate(
                    CONFLICT_TIMEOUT,
                    lambda: "still refused: %s" % last["error"]):
                try:
                    function(leftover.id, ignore_missing=True, **kwargs)
                    return
                except sdk.ConflictException as exc:
                    last["error"] = cloud.explain(exc)
        return start

    kinds = [
        sweep.Kind("server", delete(conn.compute.delete_server),
                   lambda leftover: nova_servers.wait_server_gone(conn, leftover.id)),
        sweep.Kind("floating IP", delete(conn.network.delete_ip)),
        sweep.Kind("port", delete(conn.network.delete_port)),
        sweep.Kind("security group",
                   delete(conn.network.delete_security_group)),
        sweep.Kind("keypair", delete(conn.compute.delete_keypair)),
        # Not every cloud has Cinder: its proxy only when there are volumes.
        sweep.Kind("volume snapshot", delete(
            lambda *args, **kwargs: conn.block_storage.delete_snapshot(
                *args, **kwargs)),
            lambda leftover: nova_volumes.wait_snapshot_gone(
                conn, leftover.id)),
        sweep.Kind("volume", delete(lambda *args, **kwargs: conn.block_storage
                                    .delete_volume(*args, **kwargs)),
                   lambda leftover: nova_volumes.wait_volume_gone(
                       conn, leftover.id)),
        sweep.Kind("image", delete(conn.image.delete_image)),
    ]
    found = cloud.call("listing the cloud's tagged resources", leftovers, conn)
    outcomes = sweep.remove(found, kinds, protected, dry_run=dry_run,
                            explain=cloud.explain, log=log)
    if dry_run:
        return outcomes
    removed = {(outcome.leftover.kind, outcome.leftover.id)
               for outcome in outcomes if not outcome.error}
    for leftover in cloud.call("listing the cloud's tagged resources", leftovers,
                               conn):
        if (leftover.kind, leftover.id) in removed:
            outcomes.append(sweep.Outcome(leftover,
                                          "still there after the sweep"))
    return outcomes
