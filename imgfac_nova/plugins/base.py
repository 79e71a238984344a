"""What an OS plugin and a cloud plugin implement.

Plugins are stevedore drivers: a class named by an entry point in the
``imgfac_nova.os_plugins`` or ``imgfac_nova.cloud_plugins`` namespace. The class
carries its ``.info`` metadata (as Image Factory's ``.info`` files did) and the
parameters it accepts. A plugin reports progress and results only through the
:class:`~imgfac_nova.jobs.BuildContext` it is handed.
"""
import abc
import dataclasses


@dataclasses.dataclass(frozen=True)
class PluginInfo:
    """A plugin's metadata.

    ``targets`` for an OS plugin are ``(os_name, version, arch)`` tuples where
    ``None`` matches anything; for a cloud plugin they are target names
    (e.g. ``"openstack"``, ``"qcow2"``).
    """

    type: str  # "os" or "cloud"
    targets: tuple
    description: str
    maintainer: str
    version: str
    license: str

    def to_dict(self):
        data = dataclasses.asdict(self)
        data["targets"] = [list(t) if isinstance(t, tuple) else t
                           for t in self.targets]
        return data


class Plugin(abc.ABC):
    """Common to OS and cloud plugins."""

    #: The plugin's metadata.
    info: PluginInfo
    #: The :class:`~imgfac_nova.parameters.Parameter` list the plugin accepts.
    parameters: tuple = ()
    #: A keystoneauth1 auth plugin to reach the cloud as the caller (set by the
    #: builder for API requests); None means openstacksdk's config loader.
    cloud_auth = None

    def __init__(self, conf=None):
        self.conf = conf

    @property
    def cloud_timeout(self):
        """Seconds one request to a cloud may take (cloud_request_timeout),
        None for no limit."""
        return getattr(self.conf, "cloud_request_timeout", None) or None

    def sweep(self, protected, parameters, dry_run=False):
        """Remove what crashed builds left behind: the resources tagged with a
        build id (servers, work files, a provider's half-uploaded images),
        except those ``protected(leftover)`` keeps (it returns a
        reason, or None; ``protected.failed()`` lists the image records the
        sweep counts as failed), in dependency order, through
        :func:`novaimagebuilder.sweep.remove`. Returns its Outcomes (with
        ``dry_run``, what would be removed). Default: nothing to sweep."""
        return []


class OSPlugin(Plugin):
    """Builds base images of operating systems."""

    #: Runs its machines on the host the build runs on (the REST daemon's,
    #: so API callers need policy imgfac:build:local_os_plugin).
    runs_on_host = False

    @classmethod
    def preferred(cls, conf):
        """True when this plugin should win a tie with other plugins that
        build the same OS, given this configuration (e.g. the local plugin
        when no cloud is configured). At most one installed plugin should."""
        return False

    def check(self, template, parameters):
        """Check what can be checked before anything is created (credentials,
        flavor, network...); raise with a one-line message when it is wrong.
        The default checks nothing."""

    def jeos_cache(self, parameters):
        """The novaimagebuilder.images.jeos.Cache this plugin keeps JEOS entries in
        for these (resolved) parameters, or None when it keeps none."""
        return None

    @abc.abstractmethod
    def create_base_image(self, build, template, parameters):
        """Build a base image from ``template``.

        Report progress with ``build.progress(percent, activity)``; write local
        image data to ``build.body_path`` and record its qemu-img format with
        ``build.set_property("format", ...)`` (it is never guessed from the
        bytes), and/or record where the image lives with
        ``build.set_property(name, value)``; store the package manifest with
        ``build.set_icicle(xml)``. Return when the image is complete; raise an
        exception with a one-line message when it cannot be. Stop promptly and
        clean up when ``build.cancelled`` is set.
        """

    def create_target_image(self, build, target, base_image, parameters):
        """OS-side changes a target needs before the cloud plugin converts it.

        ``build.body_path`` starts as a copy of the base image's data when it has
        any. A plugin that writes ``build.body_path`` records its format with
        ``build.set_property("format", ...)``. The default makes no change.
        """

    def customize_in_cloud(self, build, target, base_image, finish,
                           image_name, image_properties):
        """Make a target image of ``base_image`` where it lives (see
        :meth:`~imgfac_nova.plugins.nova.NovaOS.customize_in_cloud`).
        Default: this plugin cannot."""
        raise NotImplementedError(
            "the %s plugin cannot make target images in the cloud"
            % type(self).__name__)

    def delete_image(self, image, parameters):
        """Remove what this plugin made for ``image`` outside the store.

        For example the Glance image behind a base image. Default: nothing.
        """


class CloudPlugin(Plugin):
    """Turns base images into images for a target and puts them on providers."""

    @abc.abstractmethod
    def create_target_image(self, build, target, base_image, parameters):
        """Make the ``target`` form of ``base_image`` (format, drivers, agents).

        Write the result to ``build.body_path`` or record where it lives with
        ``build.set_property``.
        """

    def check_target(self, target, base_image, parameters):
        """Refuse, with a one-line BuildError, parameters that contradict
        ``base_image`` (whose ICICLE may not exist yet); called before the
        target's record exists. Default: nothing to check."""

    def in_cloud(self, base_image, os_plugin, parameters):
        """Whether the target of ``base_image`` is made where the base lives
        (``os_plugin``, the base's OS plugin, boots it there) instead of from
        its bytes here; raise with a one-line message when the parameters
        ask for what cannot be. Called before the target's record exists
        and again when it is built. Default: never."""
        return False

    def create_target_image_in_cloud(self, build, target, base_image,
                                     os_plugin, parameters):
        """Make the ``target`` form of ``base_image`` where it lives, with
        ``os_plugin`` (target content included), when :meth:`in_cloud` says
        so; then neither plugin's create_target_image runs. Record where the
        result lives with ``build.set_property``."""
        raise NotImplementedError(
            "the %s plugin cannot make target images in the cloud"
            % type(self).__name__)

    def delete_target_image(self, image, parameters):
        """Remove what this plugin made for the target image ``image``
        outside the store (the Glance image of one made in the cloud).
        Default: nothing."""

    def check_provider(self, provider, credentials, parameters, size=0):
        """Check the provider and credentials (secret) before anything is
        created; raise with a one-line message when they are unusable.
        ``size``: the bytes the push is expected to move, as far as known
        before it starts (0: not known), for waits scaled to it. Returns
        the provider as the record may keep it (no secrets). The default
        checks nothing and keeps ``provider`` as given."""
        return provider

    def provider_needs_credentials(self, provider):
        """Whether a push to ``provider`` (as its record keeps it) takes
        credentials from its caller: they are never stored, so a resumed
        push needs them again. Default: it does."""
        return True

    @abc.abstractmethod
    def push_image_to_provider(self, build, provider, credentials, target_image,
                               parameters):
        """Upload ``target_image`` to ``provider`` using ``credentials`` (secret).

        Record the provider's id of the image with
        ``build.set_identifier_on_provider(id)`` and the account with
        ``build.set_provider_account_identifier(account)``. Anything made on
        the provider is removed again when the push fails.
        """

    #: Parameters a snapshot build takes besides the plugin's own (an OS
    #: plugin's), resolved and redacted with them.
    snapshot_parameters: tuple = ()

    def check_snapshot(self, provider, credentials, template, parameters):
        """Check a snapshot build of ``template`` on ``provider`` before
        anything is created (after check_provider). Default: nothing."""

    def snapshot_image_on_provider(self, build, provider, credentials, template,
                                   parameters):
        """Build the image directly on ``provider`` and snapshot it there."""
        raise NotImplementedError(
            "the %s plugin cannot snapshot images on a provider"
            % type(self).__name__)

    @abc.abstractmethod
    def delete_from_provider(self, image, provider, credentials, parameters):
        """Remove the provider image ``image`` from ``provider``."""
