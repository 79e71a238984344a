"""Going on with a build whose process died (``imgfac-nova resume``, and the
daemon when it starts), or giving it up (``imgfac-nova resume --abandon``).

Base-image and target-image builds and pushes to a provider resume: their
steps are TaskFlow flows whose finished tasks are saved in the records'
database, and the build goes on after the last of them (a target made from
a copy of its base's data copies it again; a push adopts the image its
earlier run left at the provider). A snapshot push (``--snapshot``) does
not resume. Secrets are never stored, so a resumed build gets again from
its caller those it still needs:
the template while the installer has not booted (its root password) or
when it holds repository keys or passwords in URLs, the secret
parameters it was started with (the install script only while the
installer has not booted), and a push's provider credentials (none for a
clouds.yaml entry, ``@CLOUD``: clouds.yaml is read again).
"""
import datetime

from lxml import etree

from imgfac_nova import images
from imgfac_nova import template as tdl
from imgfac_nova.template_model import REDACTED
from novaimagebuilder import engine
from novaimagebuilder import errors
from novaimagebuilder import scrub
from novaimagebuilder.flows import base_image
from novaimagebuilder.tasks import names

#: Secret parameters that only the install needs.
INSTALL_ONLY = ("install_script",)

#: Hidden template texts that only the install needs, and what they are.
_INSTALL_SECRETS = {"os/rootpw": "root password", "os/key": "product key"}

#: The kinds of builds that resume (a push: unless a snapshot push).
_RESUMABLE = (images.BASE_IMAGE, images.TARGET_IMAGE, images.PROVIDER_IMAGE)

#: The worker of a build posted to the jobboard that no worker took yet.
QUEUED = "jobboard"

#: What a stored URL whose credentials were scrubbed holds.
_SCRUBBED = "://%s@" % scrub.MASK


class ResumeError(errors.BuildError):
    """A build that cannot be resumed as asked (one line)."""


def resumable(record, max_age_hours):
    """Whether ``record``, whose process died, can still be resumed: a
    base- or target-image build that has not ended, changed within
    ``max_age_hours`` (0: any age)."""
    if record.type not in _RESUMABLE or _snapshot(record) or \
            record.status not in images.ACTIVE_STATUSES:
        return False
    if not max_age_hours:
        return True
    updated = datetime.datetime.fromisoformat(record.updated)
    return datetime.datetime.now(datetime.timezone.utc) - updated <= \
        datetime.timedelta(hours=max_age_hours)


def active(record, verb="resume"):
    """ResumeError unless ``record``'s build has not ended."""
    if record.status not in images.ACTIVE_STATUSES:
        raise ResumeError("image %s is %s: there is nothing to %s"
                          % (record.identifier, record.status, verb))


def check(record, running):
    """ResumeError unless ``record`` is a build whose process died
    (``running(record)`` says whether one runs it)."""
    active(record)
    if running(record):
        raise ResumeError("image %s is being built by process %s"
                          % (record.identifier, record.worker))
    if _snapshot(record):
        raise ResumeError("image %s is a snapshot push (--snapshot): it does "
                          "not resume; abandon it (--abandon) and push again"
                          % record.identifier)


def _snapshot(record):
    """Whether ``record`` is a snapshot push (built on the provider: no
    target image)."""
    return record.type == images.PROVIDER_IMAGE and \
        not record.target_image_id


def credentials_for(record, plugin, given):
    """Check the provider credentials ``given`` (None: none) to resume the
    push ``record`` with: ResumeError unless they are given exactly when
    its provider takes credentials from the caller, which are never
    stored."""
    needed = plugin.provider_needs_credentials(record.provider)
    if needed and given is None:
        raise ResumeError(
            "image %s pushes to a provider whose credentials are never "
            "stored: give them again with --credentials FILE"
            % record.identifier)
    if given is not None and not needed:
        raise ResumeError(
            "image %s pushes to %s, whose credentials come from clouds.yaml: "
            "leave --credentials out" % (record.identifier, record.provider))


def unattended(record, plugin, trusted):
    """Why the daemon may not resume ``record`` by itself (None: it may):
    a push whose provider takes credentials from its caller (never
    stored), or a push to one of the daemon's clouds.yaml entries
    (``@CLOUD``), which only a ``trusted`` daemon's callers may name."""
    if record.type != images.PROVIDER_IMAGE or _snapshot(record):
        return None
    if plugin.provider_needs_credentials(record.provider):
        return "its provider's credentials are never stored; push it again"
    if not trusted:
        return ("it pushes to %s, one of the daemon's clouds.yaml entries, "
                "which its API callers may not name" % record.provider)
    return None


def take(record, worker):
    """Make ``worker`` the process of the build (in the record's
    transaction); ResumeError when it ended meanwhile (cancelled while
    queued)."""
    active(record)
    record.worker = worker
    record.status_detail = {"activity": "Resuming", "error": None}


def hand_back(record, worker, why):
    """Queue again the build ``worker`` handed back (in the record's
    transaction), unless another worker has taken it meanwhile."""
    if record.worker == worker:
        record.worker = QUEUED
        record.status_detail = {"activity": "Waiting for a worker (%s)" % why,
                                "error": None}


def drop_queued(record):
    """FAIL a queued build no worker took yet (in the record's
    transaction); a taken one is left to its worker."""
    if record.worker == QUEUED and record.status in images.ACTIVE_STATUSES:
        record.status = images.FAILED
        record.status_detail = {"activity": record.activity,
                                "error": "cancelled before a worker took it"}


def never_stored(record, plugin):
    """What a build of ``record`` (by ``plugin``) holds that is never
    stored and that it needs from its start: hidden template texts and
    secret parameters (empty: its record alone lets any process run it)."""
    return _hidden(record.template, False) + sorted(_not_kept(record, plugin))


def installed(store, record):
    """Whether the build's installer had booted (its script delivered)."""
    return names.BOOT_INSTALLER in engine.finished_tasks(
        store.flow_persistence(), record.identifier, base_image.NAME)


def template_for(record, given, installed_):
    """The Template to resume ``record`` with: ``given`` (a Template; the
    record's own, or ResumeError), else the record's copy when it lacks
    nothing the rest of the build needs."""
    if given is not None:
        if given.redacted_xml() != record.template:
            raise ResumeError("the template given is not the one image %s "
                              "was started with" % record.identifier)
        return given
    hidden = _hidden(record.template, installed_)
    if hidden:
        raise ResumeError(
            "image %s's template holds secrets that are never stored (%s) "
            "and the build still needs them: give the template again with "
            "--template FILE" % (record.identifier, ", ".join(hidden)))
    return tdl.parse_template(record.template,
                              "image %s's template" % record.identifier)


def _hidden(xml, installed_):
    root = etree.fromstring(xml.encode())
    hidden = [] if installed_ else [
        what for path, what in _INSTALL_SECRETS.items()
        if (root.findtext(path) or "").strip() == REDACTED]
    if any((key.text or "").strip() == REDACTED
           for key in root.iterfind("repositories/repository/clientkey")):
        hidden.append("repository client keys")
    if _SCRUBBED in xml:
        hidden.append("credentials in URLs")
    return hidden


def values_for(record, plugin, given, installed_):
    """The parameters to resume ``record`` with: those it was started
    with, and from ``given`` the secret ones (and URLs whose credentials
    the record scrubbed) it still needs; ResumeError naming the missing
    ones, or a given one it does not take."""
    values = dict(record.parameters)
    wanted = _not_kept(record, plugin)
    for name in set(given) - wanted:
        raise ResumeError("a resumed build keeps the parameters it was "
                          "started with; %r is not one it needs again"
                          % name)
    missing = []
    for name in sorted(wanted):
        if name in given:
            values[name] = given[name]
        elif name in INSTALL_ONLY and installed_:
            del values[name]  # the installer has it
        else:
            missing.append(name)
    if missing:
        raise ResumeError(
            "image %s needs again parameters that are never stored: %s; "
            "give them with --file-parameter NAME FILE"
            % (record.identifier, ", ".join(missing)))
    return values


def _not_kept(record, plugin):
    """Names of the parameters ``record`` holds without their value: the
    secret ones, and URLs whose credentials were scrubbed."""
    secret = {p.name for p in plugin.parameters if p.secret}
    return {name for name, value in record.parameters.items()
            if name in secret or _SCRUBBED in str(value)}
