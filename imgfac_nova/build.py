"""Starting builds: base -> target -> provider, each in a worker thread.

The builder checks everything it can before it creates a store record (plugin
choice, parameter types), so bad input changes nothing; :mod:`runner` then
runs the steps (a plugin exception marks the image FAILED with a one-line
error; the traceback goes to the log only). Credentials in URLs never reach a
record or a build log (:mod:`scrub`). Sweeping, the JEOS caches, stopping and
deleting are in :mod:`cleanup`.
"""
import logging
import os
import shutil
import socket

from imgfac_nova import guard
from imgfac_nova import images
from imgfac_nova import parameters as params
from imgfac_nova import resume
from imgfac_nova import runner
from imgfac_nova import store as store_mod
from imgfac_nova import target_content
from imgfac_nova.plugins import base as plugin_base
from imgfac_nova.plugins import manager as plugin_manager
from imgfac_nova.template_xml import TemplateError
from novaimagebuilder import scrub
from novaimagebuilder import sweep
from novaimagebuilder import waiter

LOG = logging.getLogger(__name__)

#: Parameters the front end itself understands, whatever the plugin.
COMMON_PARAMETERS = ("os_plugin", "cloud_plugin")


def push_size(record, template=None):
    """The bytes a push is expected to move, as known before it starts:
    for ``record`` (the target image pushed, or the base image it is made
    of) its data file's size, else its min_disk; for a chain from
    ``template`` the template's disk size; 0 when none is known."""
    if record is not None:
        if record.data and os.path.isfile(record.data):
            return os.path.getsize(record.data)
        return int(record.properties.get("min_disk") or 0) * waiter.GiB
    return (template.disk_size or 0) if template is not None else 0


class Builder:
    """Creates image records and runs plugins to fill them."""

    def __init__(self, conf, store, plugins=None, on_change=None, slots=None,
                 project_id=None, cloud_auth=None, url_check=None, *,
                 strict_parameters=False, trust_id=None, checkpoint=None,
                 claim=None, token_window=None):
        """``slots`` (a jobs.BuildSlots) bounds concurrent builds; ``project_id`` is
        recorded on new images; ``cloud_auth`` (a keystoneauth1 auth plugin)
        is how plugins reach the cloud for this caller (and ``trust_id``,
        recorded on new images, the Keystone trust ``cloud_auth`` acts
        through for a daemon's caller: api/trusts.py); ``url_check`` vets
        the URLs its builds open (netguard), None for the trusted CLI. A
        parameter no plugin of a build knows is refused with
        ``strict_parameters`` (ParameterError), else warned about.
        ``checkpoint``, ``claim``: the jobs.BuildContext.checkpoint and
        claim of its builds. ``token_window``: Keystone's allow_expired
        window (seconds) for a daemon's builds on their caller's token
        alone (no trust), which it says the cloud accepts that token for
        (novaimagebuilder.tokens)."""
        self.conf = conf
        self.strict_parameters = strict_parameters
        self.store = store
        self.plugins = plugins or plugin_manager.PluginManager(conf)
        self.on_change = on_change
        self.slots = slots
        self.project_id = project_id
        self.cloud_auth = cloud_auth
        self.trust_id = trust_id
        self.url_check = url_check
        self.checkpoint = checkpoint
        self.claim = claim
        self.token_window = token_window

    def plugin(self, name):
        """The plugin ``name``, reaching the cloud as this builder's caller."""
        plugin = self.plugins.get(name)
        plugin.cloud_auth = self.cloud_auth
        return plugin

    # -- preparing: everything that can fail on bad input, before any record ---

    def os_plugin_name(self, template, values):
        """The name of the OS plugin a build of ``template`` with
        ``values`` uses."""
        return self.plugins.choose_os_plugin(
            template.os.name, template.os.version, template.os.arch,
            requested=values.get("os_plugin"),
            preferred=getattr(self.conf, "os_plugin", None))

    def _cloud_name(self, target, values):
        return self.plugins.choose_cloud_plugin(
            target, requested=values.get("cloud_plugin"))

    def resolve(self, specs, values, plugin_name, others=()):
        """Typed values for one plugin of a build; ``others``: the
        parameters of the build's other plugins (known, not this one's)."""
        return params.resolve(
            specs, values, plugin_name,
            COMMON_PARAMETERS + tuple(p.name for p in others),
            strict=self.strict_parameters)

    def os_plugin_for(self, template, values, others=()):
        """``(plugin name, plugin, typed parameters)`` a base-image build of
        ``template`` with ``values`` uses; nothing is created."""
        plugin_name = self.os_plugin_name(template, values)
        plugin = self.plugin(plugin_name)
        typed = self.resolve(plugin.parameters, values, plugin_name, others)
        return plugin_name, plugin, typed

    def _cloud_step(self, target, values, snapshot=False, others=()):
        """``(plugin name, plugin, typed parameters)`` of the cloud plugin
        for ``target``; a snapshot build takes its snapshot_parameters too."""
        plugin_name = self._cloud_name(target, values)
        plugin = self.plugin(plugin_name)
        typed = self.resolve(_specs(plugin, snapshot), values, plugin_name,
                             others)
        return plugin_name, plugin, typed

    def _record(self, kind, plugin_name, plugin, typed, snapshot=False,
                source=None, **fields):
        """A new record of a build with ``typed`` parameters; the root
        password of ``source`` (the Template it builds) is masked in them
        too."""
        hidden = (source.os.rootpw,) if source is not None else ()
        return images.ImageRecord(
            type=kind, plugin=plugin_name, project_id=self.project_id,
            trust_id=self.trust_id,
            parameters=params.redact(_specs(plugin, snapshot), typed, hidden),
            **fields)

    # -- public verbs -----------------------------------------------------------

    def _base_step(self, template, values, others=()):
        name, plugin, typed = self.os_plugin_for(template, values, others)
        plugin.check(template, typed)
        record = self._record(images.BASE_IMAGE, name, plugin, typed,
                              source=template,
                              template=template.redacted_xml())
        return record, lambda ctx: plugin.create_base_image(ctx, template, typed)

    def _target_chain(self, target, values, base_id, template, others=()):
        """Steps that make a target image, from a stored base or a template;
        ``others``: the parameters of a plugin that follows them."""
        if base_id:
            base, steps = self._complete(base_id, images.BASE_IMAGE), []
            os_specs = ()
        else:
            cloud = self.plugins.all()[self._cloud_name(target, values)]
            steps = [self._base_step(template, values,
                                     cloud.parameters + tuple(others))]
            base = steps[0][0]
            os_specs = self.plugins.all()[base.plugin].parameters
        steps.append(self._target_step(target, values, base,
                                       os_specs + tuple(others)))
        return steps

    def base_image(self, template, values):
        """Start building a base image; returns the running jobs.Job."""
        return runner.start(self, [self._base_step(template, values)])

    def target_image(self, target, values, base_id=None, template=None):
        """Start building a target image from a base image or a template."""
        return runner.start(self, self._target_chain(target, values, base_id, template))

    def _target_step(self, target, values, base, others=()):
        name, plugin, typed = self._cloud_step(target, values, others=others)
        try:
            # The OS plugin reads it again when it applies it; a bad file
            # is bad input now, before any record exists.
            target_content.check(self.conf)
        except TemplateError as exc:
            raise plugin_manager.PluginError(str(exc)) from None
        os_plugin = self.plugin(base.plugin) if base.plugin in \
            self.plugins.os_plugins else None
        plugin.check_target(target, base, typed)  # bad input: one line now
        plugin.in_cloud(base, os_plugin, typed)
        record = self._record(images.TARGET_IMAGE, name, plugin, typed,
                              target=target, base_image_id=base.identifier,
                              template=base.template)
        return record, self._target_run(plugin, os_plugin, target,
                                        base.identifier, typed)

    def _target_run(self, plugin, os_plugin, target, base_id, typed):
        """What a target build runs (the base image read when it starts):
        made in the cloud, or from a copy of the base image's data."""
        def run(ctx):
            base_now = self.store.get(base_id)
            if plugin.in_cloud(base_now, os_plugin, typed):
                plugin.create_target_image_in_cloud(ctx, target, base_now,
                                                    os_plugin, typed)
                return
            if base_now.data:
                ctx.progress(0, "Copying base image %s" % base_id)
                shutil.copyfile(base_now.data, ctx.body_path)
                self.store.update(ctx.identifier, data=ctx.body_path)
            if os_plugin is not None:
                os_plugin.create_target_image(ctx, target, base_now, typed)
            plugin.create_target_image(ctx, target, base_now, typed)
        return run

    def provider_image(self, target, provider, credentials, values,
                       image_id=None, template=None, snapshot=False):
        """Start pushing an image to a provider (building what it needs first).

        ``image_id`` names a target image, or a base image to make the target
        image from. ``credentials`` is secret: it is handed to the plugin and
        never stored.
        """
        chain = ()  # the other plugin a push from a template runs
        if template is not None and not (snapshot or image_id):
            os_name = self.os_plugin_name(template, values)
            chain = self.plugins.all()[os_name].parameters
        name, plugin, typed = self._cloud_step(target, values, snapshot,
                                               chain)
        own = _specs(plugin, snapshot)
        steps = []
        if snapshot:
            if template is None:
                raise plugin_manager.PluginError(
                    "--snapshot builds from a template: give --template")
            if type(plugin).snapshot_image_on_provider is \
                    plugin_base.CloudPlugin.snapshot_image_on_provider:
                raise plugin_manager.PluginError(
                    "the %s plugin cannot build on a provider (--snapshot); "
                    "build the image, then push it" % name)
            redacted = plugin.check_provider(provider, credentials, typed)
            plugin.check_snapshot(provider, credentials, template, typed)
            record = self._record(
                images.PROVIDER_IMAGE, name, plugin, typed, snapshot=True,
                source=template, template=template.redacted_xml(),
                target=target, provider=redacted)
            steps.append((record, lambda ctx: plugin.snapshot_image_on_provider(
                ctx, provider, credentials, template, typed)))
            return runner.start(self, steps)
        if image_id:
            source = self._complete(image_id)
            if source.type == images.TARGET_IMAGE:
                if (source.target or "").lower() != target.lower():
                    raise plugin_manager.PluginError(
                        "image %s is a %s target image, not %s"
                        % (image_id, source.target, target))
                target_record = source
            elif source.type == images.BASE_IMAGE:
                steps.append(self._target_step(target, values, source, own))
                target_record = steps[-1][0]
            else:
                raise plugin_manager.PluginError(
                    "image %s is a provider image; give a base or target image"
                    % image_id)
        else:
            steps.extend(self._target_chain(target, values, None, template,
                                            own))
            target_record = steps[-1][0]
        # Last of the checks, as it talks to the provider: nothing exists yet.
        fields = dict(target=target, provider=plugin.check_provider(
            provider, credentials, typed, size=push_size(
                source if image_id else None, template)))
        record = self._record(images.PROVIDER_IMAGE, name, plugin, typed,
                              target_image_id=target_record.identifier,
                              base_image_id=target_record.base_image_id,
                              template=target_record.template, **fields)
        steps.append((record, lambda ctx: plugin.push_image_to_provider(
            ctx, provider, credentials, self.store.get(
                target_record.identifier), typed)))
        return runner.start(self, steps)

    def queue_base_image(self, template, values, post):
        """Accept a base-image build that a jobboard worker runs from its
        record alone: checked as :meth:`base_image` checks it, refused
        (ResumeError) when it needs a secret, which is never stored; the
        PENDING record is stored, then ``post(record)`` posts its job.
        Returns the record."""
        record, _ = self._base_step(template, values)
        missing = resume.never_stored(record, self.plugin(record.plugin))
        if missing:
            raise resume.ResumeError(
                "a build run by the jobboard's workers cannot hold secrets, "
                "which are never stored or posted: this one has %s"
                % ", ".join(missing))
        record.worker = resume.QUEUED
        record.status = images.PENDING
        record.status_detail = {"activity": "Waiting for a worker",
                                "error": None}
        self.store.add(record)
        try:
            post(record)
        except BaseException as exc:
            runner.fail(self, record, "not posted: %s" % scrub.one_line(exc))
            raise
        return self.store.get(record.identifier)

    def resume(self, identifier, values=None, template=None, owner=None,
               credentials=None):
        """Go on with the build ``identifier`` whose process died, after its
        last finished step, with the secrets it still needs given again
        (``values``, ``template``, a push's provider ``credentials``: see
        :mod:`imgfac_nova.resume`); returns the running jobs.Job.
        ResumeError (one line) when it cannot. A jobboard worker gives its
        ``owner`` name: its claim says no other process runs the build."""
        record = self.store.get(identifier)
        resume.check(record, self.still_running if owner is None
                     else lambda record: False)
        plugin = self.plugin(record.plugin)
        if record.type == images.PROVIDER_IMAGE:
            run = self._resumed_push(record, plugin, values or {}, template,
                                     credentials)
        elif credentials is not None:
            raise resume.ResumeError("image %s is a %s: it takes no "
                                     "--credentials" % (identifier,
                                                        record.type))
        elif record.type == images.TARGET_IMAGE:
            run = self._resumed_target(record, plugin, values or {},
                                       template)
        else:
            installed = resume.installed(self.store, record)
            source = resume.template_for(record, template, installed)
            typed = self.resolve(plugin.parameters, resume.values_for(
                record, plugin, values or {}, installed), record.plugin)
            plugin.check(source, typed)

            def run(ctx):
                plugin.create_base_image(ctx, source, typed)
        LOG.info("Resuming %s %s (started %s, by %s)", record.type,
                 identifier, record.created, record.worker)
        record = self.store.modify(identifier, lambda current: resume.take(
            current, owner or sweep.this_process()))
        return runner.start(self, [(record, run)])

    def _resumed_target(self, record, plugin, values, template):
        """What the resumed target build ``record`` runs: the target step
        again from its base image (its flow goes on after its last finished
        task)."""
        if template is not None:
            raise resume.ResumeError(
                "image %s is a target image: it resumes from its base image; "
                "leave --template out" % record.identifier)
        try:
            base = self._complete(record.base_image_id, images.BASE_IMAGE)
        except (plugin_manager.PluginError, store_mod.NotFound) as exc:
            raise resume.ResumeError("image %s cannot resume: its base %s"
                                     % (record.identifier, exc)) from None
        typed = self.resolve(plugin.parameters, resume.values_for(
            record, plugin, values, True), record.plugin)
        os_plugin = self.plugin(base.plugin) if base.plugin in \
            self.plugins.os_plugins else None
        return self._target_run(plugin, os_plugin, record.target,
                                base.identifier, typed)

    def _resumed_push(self, record, plugin, values, template, credentials):
        """What the resumed push ``record`` runs: the push of its target
        image again (its flow goes on after its last finished task, with
        the image its earlier run left at the provider), once the provider
        and ``credentials`` are checked again."""
        if template is not None:
            raise resume.ResumeError(
                "image %s is a push: it resumes from its target image; leave "
                "--template out" % record.identifier)
        resume.credentials_for(record, plugin, credentials)
        try:
            target = self.store.get(record.target_image_id)
        except store_mod.NotFound as exc:
            raise resume.ResumeError("image %s cannot resume: %s"
                                     % (record.identifier, exc)) from None
        if target.status != images.COMPLETE:
            raise resume.ResumeError(
                "image %s cannot resume: its target image %s is %s, not "
                "COMPLETE%s" % (record.identifier, target.identifier,
                                target.status,
                                "; resume it first" if target.status in
                                images.ACTIVE_STATUSES else ""))
        typed = self.resolve(plugin.parameters, resume.values_for(
            record, plugin, values, True), record.plugin)
        plugin.check_provider(record.provider, credentials, typed,
                              size=push_size(target))

        def run(ctx):
            plugin.push_image_to_provider(
                ctx, record.provider, credentials,
                self.store.get(target.identifier), typed)
        return run

    def abandon(self, identifier, why="abandoned", owner=None):
        """Give up the build ``identifier`` whose process died (``why``
        begins its error): it is FAILED, so a sweep removes what it
        made. A jobboard worker gives its ``owner`` name (see
        :meth:`resume`)."""
        record = self.store.get(identifier)
        resume.active(record, "abandon")
        if owner is None and self.still_running(record):
            raise resume.ResumeError("image %s is being built by process %s"
                                     % (identifier, record.worker))
        runner.fail(self, record, "%s at %d %%: %s" % (
            why, record.percent_complete, record.activity))

    def _complete(self, identifier, kind=None):
        record = self.store.get(identifier)
        if kind and record.type != kind:
            raise plugin_manager.PluginError("image %s is a %s, not a %s"
                                             % (identifier, record.type, kind))
        if record.status != images.COMPLETE:
            raise plugin_manager.PluginError("image %s is %s, not COMPLETE"
                                             % (identifier, record.status))
        return record

    # -- judging builds after crashes ------------------------------------------

    @staticmethod
    def still_running(record):
        """True when an active record's build runs here or on another host
        (another host's process is not ours to judge), or is the
        jobboard's (its workers' claims judge it)."""
        if (record.worker or "").partition(":")[0] == resume.QUEUED:
            return True
        pid = guard.owner_pid(record)
        if pid is not None and guard.alive(pid):
            return True
        host = (record.worker or "").rpartition(":")[0]
        return bool(host) and host != socket.gethostname()

    def ended(self, record):
        """Mark the active ``record`` whose process died FAILED, naming the
        step it was at."""
        runner.fail(self, record, guard.ended_error(record))


def _specs(plugin, snapshot):
    return plugin.parameters + (plugin.snapshot_parameters if snapshot
                                else ())
