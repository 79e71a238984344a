"""Glance providers, as Image Factory named them, and pushing images there.

PROVIDER is ``@CLOUD`` (a clouds.yaml entry; CREDENTIALS is then ``-``) or
Image Factory's provider definition: a JSON object (or a file holding one)
with ``glance-host``/``glance-port`` or an ``auth_url``, and optionally
``container_format``, ``is_public``/``visibility``, ``min_disk``,
``min_ram``, ``region``. CREDENTIALS is then Image Factory's
``<provider_credentials><openstack_credentials>`` XML: ``username``,
``password``, ``tenant`` (or ``project``/``project_name``), ``auth_url`` and
the Keystone v3 domain fields. Credentials are used, never stored: a
provider image record keeps the provider with secrets removed.
"""
import dataclasses
import functools
import json
import logging
import os

from imgfac_nova import images
from imgfac_nova.parameters import Parameter
from imgfac_nova.plugins import base
from novaimagebuilder import cloud
from novaimagebuilder import errors

LOG = logging.getLogger(__name__)

PROVIDER_KEYS = {"glance-host", "glance-port", "auth_url", "container_format",
                 "is_public", "visibility", "min_disk", "min_ram", "region",
                 "name"}
_SECRET_WORDS = ("password", "secret", "token", "key", "credential")
_CREDENTIAL_FIELDS = {
    "username": "username", "password": "password",
    "tenant": "project_name", "tenant_name": "project_name",
    "project": "project_name", "project_name": "project_name",
    "project_id": "project_id", "tenant_id": "project_id",
    "auth_url": "auth_url",
    "user_domain_name": "user_domain_name", "user_domain_id":
        "user_domain_id", "project_domain_name": "project_domain_name",
    "project_domain_id": "project_domain_id", "domain_name":
        "user_domain_name", "domain_id": "user_domain_id",
    "strategy": None, "region": "region",
}

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


class ProviderError(errors.BuildError):
    """The provider or its credentials are unusable; str() is one line."""


@dataclasses.dataclass
class Provider:
    """Where to push: a clouds.yaml entry, or an Image Factory definition."""

    cloud: str | None = None
    definition: dict = dataclasses.field(default_factory=dict)

    @property
    def endpoint(self):
        host = self.definition.get("glance-host")
        if not host:
            return None
        port = self.definition.get("glance-port", 9292)
        return "http://%s:%s" % (host, port)

    @property
    def visibility(self):
        if "visibility" in self.definition:
            return str(self.definition["visibility"])
        public = self.definition.get("is_public")
        if isinstance(public, str):
            public = public.strip().lower() in ("1", "true", "yes")
        return "public" if public else "private"

    def redacted(self):
        """What the record keeps: the provider without anything secret."""
        if self.cloud:
            return "@" + self.cloud
        return json.dumps({k: v for k, v in sorted(self.definition.items())
                           if not any(w in k.lower() for w in _SECRET_WORDS)},
                          sort_keys=True)


def parse_provider(text):
    """A :class:`Provider` from ``@CLOUD``, a JSON definition or a file
    holding one."""
    text = (text or "").strip()
    if text.startswith("@"):
        if not text[1:]:
            raise ProviderError("the provider '@' names no cloud: give "
                                "@CLOUD, a clouds.yaml entry")
        return Provider(cloud=text[1:])
    where = "the provider definition"
    if not text.startswith("{") and os.path.isfile(text):
        where = "provider definition %s" % text
        try:
            with open(text, encoding="utf-8") as handle:
                text = handle.read()
        except (OSError, UnicodeDecodeError) as exc:
            raise ProviderError("cannot read %s: %s" % (
                where, getattr(exc, "strerror", None) or "not UTF-8")) \
                from None
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise ProviderError(
            "%s is not JSON (line %d: %s); give @CLOUD or an Image Factory "
            "provider definition" % (where, exc.lineno, exc.msg)) from None
    if not isinstance(data, dict):
        raise ProviderError("%s must be a JSON object" % where)
    unknown = sorted(set(data) - PROVIDER_KEYS)
    if unknown:
        raise ProviderError("%s has unknown keys %s (known: %s)" % (
            where, ", ".join(unknown), ", ".join(sorted(PROVIDER_KEYS))))
    if not (data.get("glance-host") or data.get("auth_url")):
        raise ProviderError("%s needs glance-host or auth_url" % where)
    for key in ("glance-port", "min_disk", "min_ram"):
        value = data.get(key, 0)
        if isinstance(value, bool) or not str(value).isdigit():
            raise ProviderError("%s: %s must be a whole number, not %r"
                                % (where, key, value))
        if key in data:
            data[key] = int(value)
    return Provider(definition=data)


def parse_credentials(text):
    """Keystone password-auth options from Image Factory's credentials XML.

    Error messages never quote the document (it holds the password).
    """
    from lxml import etree
    parser = etree.XMLParser(resolve_entities=False, no_network=True)
    try:
        root = etree.fromstring((text or "").encode(), parser)
    except etree.XMLSyntaxError as exc:
        raise ProviderError("the credentials are not XML (line %s)"
                            % (exc.lineno or "?")) from None
    if root.tag != "provider_credentials":
        raise ProviderError("the credentials XML must have the root element "
                            "<provider_credentials>, not <%s>" % root.tag)
    found = root.find("openstack_credentials")
    if found is None:
        raise ProviderError("the credentials XML has no "
                            "<openstack_credentials> element")
    options = {}
    for child in found:
        if not isinstance(child.tag, str):
            continue  # comments
        if child.tag not in _CREDENTIAL_FIELDS:
            raise ProviderError("unknown element <%s> in "
                                "<openstack_credentials> (known: %s)" % (
                                    child.tag,
                                    ", ".join(sorted(_CREDENTIAL_FIELDS))))
        name = _CREDENTIAL_FIELDS[child.tag]
        if name:
            options[name] = (child.text or "").strip()
    for needed in ("username", "password"):
        if not options.get(needed):
            raise ProviderError("the credentials XML has no <%s>" % needed)
    return options


@dataclasses.dataclass
class Connection:
    """An authenticated Glance client of a provider."""

    glance: object
    account: str
    cloud: str
    session: object = None  # keystoneauth session, logged in


def connect(provider, credentials, timeout=None):
    """Authenticate to ``provider``; a :class:`Connection` or a one-line
    ProviderError (refused credentials, unreachable provider...).
    ``timeout``: seconds one request may take (None: no limit)."""
    from novaimagebuilder.images import glance
    from novaimagebuilder import retries
    region = provider.definition.get("region")
    interface = None
    if provider.cloud:
        if credentials is not None:
            raise ProviderError("with the provider @%s the credentials come "
                                "from clouds.yaml: give - as CREDENTIALS"
                                % provider.cloud)
        import openstack.config
        try:
            options = {"api_timeout": timeout} if timeout else {}
            cloud = openstack.config.OpenStackConfig(
                session_constructor=retries.Session).get_one(
                cloud=provider.cloud, **options)
            session = cloud.get_session()
        except Exception as exc:
            raise ProviderError("cannot use the cloud %s: %s" % (
                provider.cloud, glance.explain(exc))) from None
        region, interface = cloud.region_name, cloud.interface
        where = "cloud %s" % provider.cloud
    else:
        if credentials is None:
            raise ProviderError("the provider definition needs CREDENTIALS "
                                "(Image Factory's provider_credentials XML)")
        options = parse_credentials(credentials)
        region = options.pop("region", None) or region
        options.setdefault("auth_url", provider.definition.get("auth_url"))
        if not options["auth_url"]:
            raise ProviderError("no auth_url in the credentials or the "
                                "provider definition")
        if not (options.get("user_domain_name") or
                options.get("user_domain_id")):
            options["user_domain_id"] = "default"
        if options.get("project_name") and not (
                options.get("project_domain_name") or
                options.get("project_domain_id")):
            options["project_domain_id"] = "default"
        from keystoneauth1 import loading
        auth = loading.get_plugin_loader("password").load_from_options(
            **options)
        session = retries.Session(auth=auth, timeout=timeout)
        where = options["auth_url"]
    try:
        access = session.auth.get_access(session)
    except Exception as exc:
        raise ProviderError("the provider %s: %s" % (
            where, glance.explain(exc))) from None
    account = "%s/%s" % (access.username or access.user_id,
                         access.project_name or access.project_id)
    client = glance.client(session, endpoint=provider.endpoint, region=region,
                           interface=interface)
    # Reach Glance itself now, so a wrong glance-host is bad input too.
    glance.call("the provider's Glance (%s) cannot be reached" % (
        provider.endpoint or where), lambda: list(client.images.list(limit=1)))
    return Connection(client, account, where, session)


class GlanceProvider(base.CloudPlugin):
    """Pushes target images (``build.body_path`` data plus the
    ``glance_properties`` a target recorded) to a provider's Glance."""

    def check_provider(self, provider, credentials, parameters, size=0):
        """Parse the provider and credentials and log in (a bare token must
        outlast the upload timeout, scaled to ``size`` as the push's is),
        before anything is created."""
        from novaimagebuilder import tokens
        parsed = parse_provider(provider)
        conn = connect(parsed, credentials, self.cloud_timeout)
        timeout = upload_timeout(parameters, size)
        tokens.check_lasts(conn.session, timeout,
                           "the push's upload timeout (%d s%s)" % (
                               timeout, " for %.3g GiB" % (size / 1024 ** 3)
                               if size else ""))
        self._connection = (parsed, conn)
        return parsed.redacted()

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
            parsed = parse_provider(provider)
            conn = connect(parsed, credentials, self.cloud_timeout)
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
                                                target_image.data))
        if _hand_over(build, parsed, conn, target_image, parameters):
            return
        source = conn.glance if _same_entry(parsed, target_image,
                                            self.cloud_auth) else \
            glance.of(target_cloud(target_image, self.cloud_auth,
                                   self.cloud_timeout))
        where = "the cloud of target image %s" % target_image.identifier
        image = glance.call("reading Glance image %s of target image %s" % (
            glance_id, target_image.identifier), source.images.get, glance_id)
        self._push(build, parsed, conn, target_image, parameters,
                   image.get("size") or 0, "Copying Glance image %s" % glance_id,
                   functools.partial(transfer.copy, source, image,
                                     conn.glance, where=where))

    def _push(self, build, parsed, conn, target_image, parameters, size,
              doing, send):
        """Make the provider's Glance image of the target with ``send(name,
        disk_format, container_format, **options)`` (glance.upload's
        arguments after its data), with the target's properties; the hash is
        checked. ``doing`` starts the activity line. It runs as the push
        flow, its steps saved with the build's."""
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

        run = push_tasks.PushRun(
            conn.glance, build.identifier, lambda: send(
                name, props["disk_format"],
                definition.get("container_format") or
                props.get("container_format", "bare"),
                visibility=parsed.visibility,
                min_disk=definition.get("min_disk",
                                        props.get("min_disk", 0)),
                min_ram=definition.get("min_ram", props.get("min_ram", 0)),
                properties=glance_properties,
                method=parameters.get("import_method", "auto"),
                progress=progress, cancel=build.cancel_event,
                timeout=timeout),
            stores=_stores(parameters), timeout=timeout,
            progress=build.progress, cancel=build.cancel_event,
            owned=getattr(build, "owned", None), log=LOG)
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
        client = connect(parse_provider(provider), credentials,
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
            parsed = parse_provider(record.provider)
            if not parsed.cloud:
                if (record.error or "").startswith(guard.ENDED) and \
                        not protected(where):
                    unreachable.append(sweep.Outcome(where, (
                        "its credentials are not stored: remove them with "
                        "'imgfac-nova delete %s --credentials FILE'")
                        % record.identifier))
                continue
            try:
                client = connect(parsed, None, self.cloud_timeout).glance
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


def _hand_over(build, parsed, conn, target_image, parameters):
    """Make the target's own Glance image the provider image when the
    provider is the cloud and project that hold it and the push asks for
    nothing that image does not have (name, visibility, container format,
    min_disk, min_ram): True when it did. Nothing moves, and the image is
    left as it is but for the ``glance_stores`` asked for, which its Glance
    copies it into (the target still holds it: ``delete`` of either image
    keeps it while the other holds it)."""
    from glanceclient import exc
    from novaimagebuilder.images import glance
    from novaimagebuilder.images import stores
    glance_id = target_image.properties[images.GLANCE_ID_PROPERTY]
    try:
        image = conn.glance.images.get(glance_id)
    except exc.HTTPNotFound:
        return False  # another cloud, or a project it is not visible to
    except Exception as error:
        raise errors.BuildError("reading Glance image %s on %s: %s" % (
            glance_id, conn.cloud, glance.explain(error))) from None
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
