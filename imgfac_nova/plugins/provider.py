"""Pushing target images to a Glance provider, as Image Factory did: their
bytes uploaded, or copied from the cloud holding their Glance image (in
that same cloud and project the image itself is handed over); deleting
them there; sweeping what failed pushes left. PROVIDER and CREDENTIALS are
:mod:`provider_access`'s; credentials are used, never stored: a provider
image record keeps the provider with secrets removed.
"""
import functools
import logging
import os

from imgfac_nova import images
from imgfac_nova.parameters import Parameter
from imgfac_nova.plugins import base
from imgfac_nova.plugins import provider_access
from novaimagebuilder import cloud
from novaimagebuilder import errors

LOG = logging.getLogger(__name__)

#: Parameters of the plugins that push to Glance.
PARAMETERS = (
    Parameter("image_name", "name of the provider's Glance image (default: "
              "imgfac-nova-<provider image id>)"),
    Parameter("import_method", "how the bytes reach the provider's Glance: "
              "auto (image import when offered, else upload), glance-direct "
              "or upload", default="auto",
              choices=("auto", "glance-direct", "upload")),
    Parameter("glance_stores", "comma-separated stores of the provider's "
              "Glance the image must be in (besides the one it lands in): "
              "the Glance copies it there itself (copy-image)"),
    Parameter("upload_timeout", "seconds the transfer to the provider's "
              "Glance may take, plus upload_timeout_per_gib for each GiB of "
              "the image", type="int", default=600, minimum=1),
    Parameter("upload_timeout_per_gib", "seconds the transfer may take for "
              "each GiB of the image", type="int",
              default=120, minimum=0),
)


class GlanceProvider(base.CloudPlugin):
    """Pushes target images (``build.body_path`` data plus the
    ``glance_properties`` a target recorded) to a provider's Glance."""

    def check_provider(self, provider, credentials, parameters, size=0):
        """Parse the provider and credentials and log in (a bare token must
        outlast the upload timeout, scaled to ``size`` as the push's is),
        before anything is created."""
        from novaimagebuilder import tokens
        parsed = provider_access.parse_provider(provider)
        conn = provider_access.connect(parsed, credentials, self.cloud_timeout)
        timeout = upload_timeout(parameters, size)
        tokens.check_lasts(conn.session, timeout,
                           "the push's upload timeout (%d s%s)" % (
                               timeout, " for %.3g GiB" % (size / 1024 ** 3)
                               if size else ""))
        self._connection = (parsed, conn)
        return parsed.redacted()

    def provider_needs_credentials(self, provider):
        """All but a clouds.yaml entry (``@CLOUD``), which is read again."""
        return not provider_access.parse_provider(provider).cloud

    def push_image_to_provider(self, build, provider, credentials,
                               target_image, parameters):
        """Upload the target's data; for a target made in the cloud, hand
        its Glance image over when the provider is that cloud and project
        (nothing moves), else copy it (:func:`transfer.copy`: the provider's
        Glance fetches it itself, or its bytes stream through in one pass).
        """
        from novaimagebuilder.images import glance
        from novaimagebuilder.images import transfer
        parsed, conn = getattr(self, "_connection", None) or (None, None)
        if conn is None:
            parsed = provider_access.parse_provider(provider)
            conn = provider_access.connect(parsed, credentials,
                                           self.cloud_timeout)
        props = target_image.properties
        glance_id = props.get(images.GLANCE_ID_PROPERTY)
        if "disk_format" not in props or not (target_image.data or
                                              glance_id):
            raise errors.BuildError("target image %s has no data to push"
                                    % target_image.identifier)
        if target_image.data:
            return self._push(build, parsed, conn, target_image, parameters,
                              os.path.getsize(target_image.data), "Uploading",
                              functools.partial(glance.upload, conn.glance,
                                                target_image.data),
                              functools.partial(glance.holds,
                                                path=target_image.data))
        seen = _visible(conn, glance_id)
        if seen is not None and _hand_over(build, parsed, conn, target_image,
                                           parameters, seen):
            return
        if _same_entry(parsed, target_image, self.cloud_auth):
            source, image = conn.glance, seen
        else:
            source, image = glance.of(target_cloud(
                target_image, self.cloud_auth, self.cloud_timeout)), None
        where = "the cloud of target image %s" % target_image.identifier
        if image is None:
            image = glance.call("reading Glance image %s of target image %s"
                                % (glance_id, target_image.identifier),
                                source.images.get, glance_id)
        self._push(build, parsed, conn, target_image, parameters,
                   image.get("size") or 0, "Copying Glance image %s" % glance_id,
                   functools.partial(transfer.copy, source, image,
                                     conn.glance, where=where),
                   functools.partial(transfer.same_bytes, image))

    def _push(self, build, parsed, conn, target_image, parameters, size,
              doing, send, holds):
        """Make the provider's Glance image of the target with ``send(name,
        disk_format, container_format, **options)`` (glance.upload's
        arguments after its data), with the target's properties; the hash is
        checked. ``doing`` starts the activity line; ``holds(image)``: whether
        a Glance image holds the target's bytes. It runs as the push flow,
        its steps saved with the build's: a resumed push goes on with the
        image its earlier run left (tasks.push.PushRun.earlier)."""
        from novaimagebuilder import engine
        from novaimagebuilder.flows import push as push_flow
        from novaimagebuilder.tasks import names
        from novaimagebuilder.tasks import push as push_tasks
        from novaimagebuilder import sweep
        from novaimagebuilder import waiter
        props = target_image.properties
        glance_properties = dict(props.get("glance_properties") or {})
        # Tagged with the push and, as every temporary resource, its owner
        # (a sweep leaves a live push alone and removes a killed one's).
        glance_properties.update({cloud.BUILD_TAG: build.identifier,
                                  cloud.OWNER_TAG: sweep.this_process(),
                                  "imgfac_target_image":
                                      target_image.identifier})
        definition = parsed.definition
        name = parameters.get("image_name") or (cloud.NAME_PREFIX +
                                                build.identifier)
        timeout = upload_timeout(parameters, size)
        build.set_provider_account_identifier(conn.account)
        build.progress(1, "%s (%d MiB) to %s as %s%s" % (
            doing, size // 1024 ** 2, conn.cloud, conn.account,
            waiter.describe(timeout, size)))

        def progress(percent, sent):
            build.progress(min(95, 1 + percent * 94 // 100),
                           "%s to %s: %d of %d MiB" % (
                               doing, conn.cloud, sent // 1024 ** 2,
                               size // 1024 ** 2))

        method = parameters.get("import_method", "auto")
        run = push_tasks.PushRun(
            conn.glance, build.identifier, lambda image_id=None: send(
                name, props["disk_format"],
                definition.get("container_format") or
                props.get("container_format", "bare"),
                visibility=parsed.visibility,
                min_disk=definition.get("min_disk",
                                        props.get("min_disk", 0)),
                min_ram=definition.get("min_ram", props.get("min_ram", 0)),
                properties=glance_properties,
                method=method, progress=progress, cancel=build.cancel_event,
                timeout=timeout, image_id=image_id),
            stores=_stores(parameters), timeout=timeout,
            progress=build.progress, cancel=build.cancel_event,
            owned=getattr(build, "owned", None), log=LOG, holds=holds,
            fill=method != "glance-direct",
            owner=glance_properties[cloud.OWNER_TAG])
        pushed = engine.run(
            push_flow.get_flow(run), build.identifier,
            getattr(build, "flow_persistence", None),
            checkpoint=getattr(build, "checkpoint", None))[names.SEND_IMAGE]
        build.set_identifier_on_provider(pushed["id"])
        build.set_property(images.GLANCE_ID_PROPERTY, pushed["id"])
        build.set_property("os_hash_algo", pushed["os_hash_algo"])
        build.set_property("os_hash_value", pushed["os_hash_value"])

    def delete_from_provider(self, image, provider, credentials, parameters):
        """Delete the provider image from the provider's Glance; for a push
        that failed, whatever it left there (images tagged with its id)."""
        from novaimagebuilder.images import glance
        if not image.identifier_on_provider and \
                image.status != images.FAILED:
            return
        client = provider_access.connect(
            provider_access.parse_provider(provider), credentials,
            self.cloud_timeout).glance
        found = {image.identifier_on_provider} - {None}
        if image.status == images.FAILED:
            found |= {leftover.id for leftover in _pushed(client, image)}
        for glance_id in sorted(found):
            glance.delete(client, glance_id)

    def sweep(self, protected, parameters, dry_run=False):
        """Remove what failed pushes of this plugin's targets left in a
        provider's Glance (a queued or half-uploaded image, tagged with the
        push's id), reached through the provider's clouds.yaml entry
        (``@CLOUD``). A provider given by definition cannot be reached:
        its credentials are never stored. A push to one whose process died is
        reported, one line, with the command that removes what it left."""
        from imgfac_nova import guard
        from novaimagebuilder.images import glance
        from novaimagebuilder import sweep
        targets = {target.lower() for target in self.info.targets}
        found, unreachable, clients = [], [], {}
        for record in protected.failed():
            if record.type != images.PROVIDER_IMAGE or \
                    (record.target or "").lower() not in targets:
                continue
            where = sweep.Leftover(record.identifier, "provider image",
                                   record.provider, "images on provider %s"
                                   % record.provider, owner=record.worker)
            parsed = provider_access.parse_provider(record.provider)
            if not parsed.cloud:
                if (record.error or "").startswith(guard.ENDED) and \
                        not protected(where):
                    unreachable.append(sweep.Outcome(where, (
                        "its credentials are not stored: remove them with "
                        "'imgfac-nova delete %s --credentials FILE'")
                        % record.identifier))
                continue
            try:
                client = provider_access.connect(
                    parsed, None, self.cloud_timeout).glance
                pushed = _pushed(client, record)
            except errors.BuildError as exc:
                if not protected(where):
                    unreachable.append(sweep.Outcome(where, str(exc)))
                continue
            clients.update({leftover.id: client for leftover in pushed})
            found += pushed
        kinds = [sweep.Kind("provider image", lambda leftover: glance.delete(
            clients[leftover.id], leftover.id))]
        return sweep.remove(found, kinds, protected, dry_run=dry_run,
                            log=LOG) + unreachable


def upload_timeout(parameters, size):
    """Seconds a push of ``size`` bytes may take: upload_timeout plus
    upload_timeout_per_gib for each GiB (:func:`waiter.for_size`)."""
    from novaimagebuilder import waiter
    return waiter.for_size(size, parameters.get("upload_timeout", 600),
                           parameters.get("upload_timeout_per_gib",
                                          waiter.SECONDS_PER_GIB))


def _same_entry(parsed, target_image, auth):
    """Whether the Glance image of a target made in the cloud is read
    through the provider's own clouds.yaml entry (its region and interface
    as that entry says): then the push reads it with the provider's
    connection, without a second login."""
    where = target_image.properties.get("glance_cloud") or {}
    return auth is None and parsed.cloud is not None and \
        where.get("cloud") == parsed.cloud and \
        not (where.get("region") or where.get("interface"))


def target_cloud(target_image, auth=None, timeout=None):
    """An openstacksdk connection to the cloud holding the Glance image of
    a target image made in the cloud (as ``auth``, an API caller's token;
    None: openstacksdk's config)."""
    from novaimagebuilder.machines import nova_connect
    where = target_image.properties.get("glance_cloud") or {}
    return nova_connect.connect(where.get("cloud"), where.get("region"),
                                where.get("interface"), auth=auth, timeout=timeout)


def _visible(conn, glance_id):
    """The Glance image ``glance_id`` as the provider's connection ``conn``
    reads it; None when it sees none (another cloud, or a project it is not
    visible to)."""
    from glanceclient import exc
    from novaimagebuilder.images import glance
    try:
        return conn.glance.images.get(glance_id)
    except exc.HTTPNotFound:
        return None
    except Exception as error:
        raise errors.BuildError("reading Glance image %s on %s: %s" % (
            glance_id, conn.cloud, glance.explain(error))) from None


def _hand_over(build, parsed, conn, target_image, parameters, image):
    """Make the target's own Glance image (``image``, as the provider's
    connection reads it) the provider image when the provider is the cloud
    and project that hold it and the push asks for nothing that image does
    not have (name, visibility, container format, min_disk, min_ram): True
    when it did. Nothing moves, and the image is left as it is but for the
    ``glance_stores`` asked for, which its Glance copies it into (the
    target still holds it: ``delete`` of either image keeps it while the
    other holds it)."""
    from novaimagebuilder.images import stores
    glance_id = image.id
    if image.get("owner") != conn.session.get_project_id() or \
            image.get("os_hash_value") != \
            target_image.properties.get("os_hash_value"):
        return False
    differing = asked_otherwise(image, parsed, parameters)
    if differing:
        LOG.info("Copying Glance image %s although %s holds it: the push "
                 "asks for another %s", glance_id, conn.cloud,
                 ", ".join(differing))
        return False
    LOG.info("%s (%s) holds Glance image %s of target image %s: handing it "
             "over, no bytes move", conn.cloud, conn.account, glance_id,
             target_image.identifier)
    build.set_provider_account_identifier(conn.account)
    wanted = _stores(parameters)
    if wanted:
        build.progress(10, "Glance copies image %s into store(s) %s" % (
            glance_id, ", ".join(wanted)))
        stores.copy_into(conn.glance, glance_id, wanted, upload_timeout(
            parameters, image.get("size") or 0), build.cancel_event)
    build.progress(50, "Handing over Glance image %s of target image %s"
                   % (glance_id, target_image.identifier))
    build.set_identifier_on_provider(glance_id)
    build.set_property(images.GLANCE_ID_PROPERTY, glance_id)
    build.set_property("handed_over_from", target_image.identifier)
    build.set_property("os_hash_algo", image.get("os_hash_algo"))
    build.set_property("os_hash_value", image.get("os_hash_value"))
    return True


def _stores(parameters):
    """The ``glance_stores`` asked for, as a list."""
    return [store.strip() for store in
            (parameters.get("glance_stores") or "").split(",")
            if store.strip()]


def asked_otherwise(image, parsed, parameters):
    """What a push to ``parsed`` with ``parameters`` asks for that the
    Glance ``image`` (a dict) does not have: sorted attribute names."""
    definition = parsed.definition
    wanted = {"name": parameters.get("image_name") or image.get("name"),
              "visibility": parsed.visibility,
              "container_format": definition.get(
                  "container_format", image.get("container_format")),
              "min_disk": definition.get("min_disk", image.get("min_disk")),
              "min_ram": definition.get("min_ram", image.get("min_ram"))}
    return sorted(key for key, value in wanted.items()
                  if image.get(key) != value)


def _pushed(client, record):
    """The images the push ``record`` made in a provider's Glance (``client``),
    as sweep Leftovers."""
    from novaimagebuilder.images import glance
    from novaimagebuilder import sweep
    return [sweep.Leftover(record.identifier, "provider image", image.id,
                           "%s on provider %s" % (image.name, record.provider),
                           owner=record.worker)
            for image in glance.tagged(client, record.identifier)]
