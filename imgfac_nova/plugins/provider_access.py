"""Glance providers as Image Factory named them: PROVIDER (a clouds.yaml
entry or a provider definition), CREDENTIALS (the provider_credentials XML)
and logging in to the provider's Glance with them (see :mod:`provider`)."""
import dataclasses
import json
import os

from novaimagebuilder import errors

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
