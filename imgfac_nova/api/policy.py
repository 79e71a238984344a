"""Who may do what: oslo.policy rules with their defaults in code.

The defaults follow the project-scoped personas Nova and Glance adopted: a
project's readers see its images, its members (and admins, whose role
implies member) build and delete them, and nobody sees another project's
images unless a policy file says so (e.g. ``"imgfac:image:get":
"role:admin or rule:imgfac:project_reader"`` for a cloud-wide admin).
Requests that would reach the daemon's own host (a local QEMU build, an SSH
agent, a tunnel, internal URLs) need the admin role. ``oslopolicy-sample-
generator --namespace imgfac_nova`` writes the sample policy file.
"""
from oslo_policy import policy

ADMIN = "imgfac:admin"
PROJECT_READER = "imgfac:project_reader"
PROJECT_MEMBER = "imgfac:project_member"
IMAGE_CREATE = "imgfac:image:create"
IMAGE_GET = "imgfac:image:get"
IMAGE_DELETE = "imgfac:image:delete"
PLUGIN_GET = "imgfac:plugin:get"
#: Inputs that reach the daemon's host, each its own rule.
LOCAL_OS_PLUGIN = "imgfac:build:local_os_plugin"
PROXY_TUNNEL = "imgfac:build:proxy_tunnel"
SSH_JUMP_AGENT = "imgfac:build:ssh_jump_agent"
INTERNAL_URLS = "imgfac:build:internal_urls"
INTERNAL_CALLBACKS = "imgfac:build:internal_callbacks"

_IMAGE_PATHS = ("/imagefactory/base_images", "/imagefactory/target_images",
                "/imagefactory/provider_images")
_PROJECT = ["project"]


def _create_paths():
    return [{"method": "POST", "path": p} for p in _IMAGE_PATHS]


_rules = [
    policy.RuleDefault(
        ADMIN, "role:admin",
        description="Callers trusted with the daemon's host."),
    policy.RuleDefault(
        PROJECT_READER, "role:reader and project_id:%(project_id)s",
        description="A reader of the project an image belongs to."),
    policy.RuleDefault(
        PROJECT_MEMBER, "role:member and project_id:%(project_id)s",
        description="A member of the project an image belongs to (or is "
                    "made for)."),
    policy.DocumentedRuleDefault(
        IMAGE_CREATE, "rule:%s" % PROJECT_MEMBER,
        "Start a base, target or provider image build in the caller's "
        "project (the target is the caller's project).",
        _create_paths(), scope_types=_PROJECT),
    policy.DocumentedRuleDefault(
        IMAGE_GET, "rule:%s" % PROJECT_READER,
        "Show an image (and its raw data); list it in collections.",
        [{"method": "GET", "path": p + "/{id}"} for p in _IMAGE_PATHS],
        scope_types=_PROJECT),
    policy.DocumentedRuleDefault(
        IMAGE_DELETE, "rule:%s" % PROJECT_MEMBER,
        "Delete an image.",
        [{"method": "DELETE", "path": p + "/{id}"} for p in _IMAGE_PATHS],
        scope_types=_PROJECT),
    policy.DocumentedRuleDefault(
        PLUGIN_GET, "role:reader",
        "List the installed plugins and show one.",
        [{"method": "GET", "path": "/imagefactory/plugins"},
         {"method": "GET", "path": "/imagefactory/plugins/{id}"}],
        scope_types=_PROJECT),
    policy.DocumentedRuleDefault(
        LOCAL_OS_PLUGIN, "rule:%s" % ADMIN,
        "Build with a plugin that runs machines on the daemon's own host "
        "(os_plugin local).", _create_paths(), scope_types=_PROJECT),
    policy.DocumentedRuleDefault(
        PROXY_TUNNEL, "rule:%s" % ADMIN,
        "Carry proxies to the guest through the build's SSH connection "
        "(proxy_tunnel), which relays from the guest into the daemon's "
        "network.", _create_paths(), scope_types=_PROJECT),
    policy.DocumentedRuleDefault(
        SSH_JUMP_AGENT, "rule:%s" % ADMIN,
        "Log in to a jump host with the daemon's SSH agent "
        "(ssh_jump_agent).", _create_paths(), scope_types=_PROJECT),
    policy.DocumentedRuleDefault(
        INTERNAL_URLS, "rule:%s" % ADMIN,
        "Have the daemon fetch URLs (install media, checksums, a provider's "
        "endpoints) on loopback-free but denied networks ([api] "
        "url_denied_networks); loopback and link-local stay refused.",
        _create_paths(), scope_types=_PROJECT),
    policy.DocumentedRuleDefault(
        INTERNAL_CALLBACKS, "rule:%s" % ADMIN,
        "Send status callbacks to addresses that are not public (loopback, "
        "link-local, denied networks).", _create_paths(),
        scope_types=_PROJECT),
]


def list_rules():
    """The rules for oslopolicy-sample-generator."""
    return _rules


def enforcer(conf):
    """An Enforcer with the defaults registered; a policy file overrides
    them."""
    enforcer = policy.Enforcer(conf)
    enforcer.register_defaults(_rules)
    return enforcer
