"""Who may do what: oslo.policy rules with their defaults in code.

An image belongs to the Keystone project that asked for it. Its project (and
a caller with the admin role, as ``imgfac:admin`` says) can see and delete it;
everyone else is told it does not exist. ``oslopolicy-sample-generator
--namespace imgfac_nova`` writes the sample policy file.
"""
from oslo_policy import policy

ADMIN = "imgfac:admin"
IMAGE_CREATE = "imgfac:image:create"
IMAGE_GET = "imgfac:image:get"
IMAGE_DELETE = "imgfac:image:delete"
PLUGIN_GET = "imgfac:plugin:get"

_IMAGE_PATHS = ("/imagefactory/base_images", "/imagefactory/target_images",
                "/imagefactory/provider_images")

_rules = [
    policy.RuleDefault(
        ADMIN, "role:admin",
        description="Callers who see and manage the images of every "
                    "project."),
    policy.RuleDefault(
        "imgfac:owner", "project_id:%(project_id)s",
        description="The project an image belongs to."),
    policy.DocumentedRuleDefault(
        IMAGE_CREATE, "",
        "Start a base, target or provider image build.",
        [{"method": "POST", "path": p} for p in _IMAGE_PATHS]),
    policy.DocumentedRuleDefault(
        IMAGE_GET, "rule:%s or rule:imgfac:owner" % ADMIN,
        "Show an image (and its raw data); list it in collections.",
        [{"method": "GET", "path": p + "/{id}"} for p in _IMAGE_PATHS]),
    policy.DocumentedRuleDefault(
        IMAGE_DELETE, "rule:%s or rule:imgfac:owner" % ADMIN,
        "Delete an image.",
        [{"method": "DELETE", "path": p + "/{id}"} for p in _IMAGE_PATHS]),
    policy.DocumentedRuleDefault(
        PLUGIN_GET, "",
        "List the installed plugins and show one.",
        [{"method": "GET", "path": "/imagefactory/plugins"},
         {"method": "GET", "path": "/imagefactory/plugins/{id}"}]),
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
