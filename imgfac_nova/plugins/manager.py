"""Finding plugins through stevedore and choosing the one that builds a target."""
import logging

from imgfac_nova.plugins import base

LOG = logging.getLogger(__name__)

OS_NAMESPACE = "imgfac_nova.os_plugins"
CLOUD_NAMESPACE = "imgfac_nova.cloud_plugins"


class PluginError(LookupError):
    """No usable plugin, or no way to choose one; str() is one line."""


def _os_score(target, name, version, arch):
    """How specifically an OS target matches; None when it does not match."""
    score = 0
    for want, have in zip(target, (name, version, arch)):
        if want is None:
            continue
        if str(want).lower() != str(have).lower():
            return None
        score += 1
    return score


class PluginManager:
    """The installed OS and cloud plugins."""

    def __init__(self, conf=None):
        self.conf = conf
        self.broken = {}  # entry point name -> one-line reason
        self.os_plugins = self._load(OS_NAMESPACE, base.OSPlugin)
        self.cloud_plugins = self._load(CLOUD_NAMESPACE, base.CloudPlugin)

    def _load(self, namespace, kind):
        from stevedore import extension

        def failed(_manager, entry_point, exc):
            self.broken[entry_point.name] = "cannot load %s: %s" % (
                entry_point.value, exc)
            LOG.warning("Plugin %s in %s cannot be loaded: %s",
                        entry_point.name, namespace, exc)

        manager = extension.ExtensionManager(
            namespace, invoke_on_load=False, on_load_failure_callback=failed)
        found = {}
        for ext in manager:
            cls = ext.plugin
            if not (isinstance(cls, type) and issubclass(cls, kind)
                    and isinstance(getattr(cls, "info", None), base.PluginInfo)):
                self.broken[ext.name] = ("%s is not a %s with PluginInfo"
                                         % (ext.entry_point.value, kind.__name__))
                continue
            found[ext.name] = cls
        return found

    def all(self):
        """Every loadable plugin class by name."""
        return {**self.os_plugins, **self.cloud_plugins}

    def get(self, name):
        """An instance of the plugin called ``name``."""
        cls = self.all().get(name)
        if cls is None:
            reason = self.broken.get(name)
            raise PluginError(reason or "no plugin named %r (installed: %s)"
                              % (name, ", ".join(sorted(self.all())) or "none"))
        return cls(self.conf)

    def os_matches(self, name, version, arch):
        """``[(score, plugin_name)]`` of OS plugins for an OS, best first."""
        matches = []
        for plugin_name, cls in self.os_plugins.items():
            scores = [_os_score(t, name, version, arch) for t in cls.info.targets]
            scores = [s for s in scores if s is not None]
            if scores:
                matches.append((max(scores), plugin_name))
        return sorted(matches, key=lambda m: (-m[0], m[1]))

    def choose_os_plugin(self, name, version, arch, requested=None,
                         preferred=None):
        """The name of the OS plugin that builds ``name version arch``.

        ``requested`` (the ``os_plugin`` parameter) must match; ``preferred``
        (the configuration option) wins when it matches. Otherwise the most
        specific match wins; in a tie, the one plugin that says it is
        preferred for this configuration (``OSPlugin.preferred``) wins, and
        anything else is an error, never a coin toss.
        """
        what = "%s %s %s" % (name, version, arch)
        matches = self.os_matches(name, version, arch)
        names = [n for _, n in matches]
        if requested:
            if requested not in names:
                self.get(requested)  # unknown plugin: say so
                raise PluginError("OS plugin %s does not build %s" %
                                  (requested, what))
            return requested
        if preferred in names:
            return preferred
        if not matches:
            raise PluginError("no OS plugin builds %s (installed OS plugins: %s)"
                              % (what, ", ".join(sorted(self.os_plugins))
                                 or "none"))
        best = [n for s, n in matches if s == matches[0][0]]
        if len(best) > 1:
            defaults = [n for n in best
                        if self.os_plugins[n].preferred(self.conf)]
            if len(defaults) == 1:
                return defaults[0]
            raise PluginError(
                "OS plugins %s all build %s; choose one with --parameter "
                "os_plugin NAME or the os_plugin configuration option"
                % (", ".join(best), what))
        return best[0]

    def choose_cloud_plugin(self, target, requested=None):
        """The name of the cloud plugin that makes images for ``target``."""
        names = sorted(n for n, cls in self.cloud_plugins.items()
                       if target.lower() in (t.lower() for t in cls.info.targets))
        if requested:
            if requested not in names:
                self.get(requested)
                raise PluginError("cloud plugin %s does not make %s images"
                                  % (requested, target))
            return requested
        if not names:
            known = sorted({t for cls in self.cloud_plugins.values()
                            for t in cls.info.targets})
            raise PluginError("no cloud plugin makes %r images (known targets: "
                              "%s)" % (target, ", ".join(known) or "none"))
        if len(names) > 1:
            raise PluginError("cloud plugins %s all make %s images; choose one "
                              "with --parameter cloud_plugin NAME"
                              % (", ".join(names), target))
        return names[0]
