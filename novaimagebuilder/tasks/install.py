"""Tasks that make the JEOS: install media, the installer, its capture and
the JEOS cache. Names in :mod:`novaimagebuilder.tasks.names`.

Each task's result is a plain id or value (saved by the engine); when the
JEOS comes from the cache, the install tasks pass through and make nothing.
"""
import dataclasses
import time

from novaimagebuilder import pipeline
from novaimagebuilder.tasks import context
from novaimagebuilder.tasks import names


class FetchMedia(context.BuildTask):
    """Fetch the install media into the media cache; provides the media
    (kind, files, sha256, source). Reversion strategy: none (the cache
    keeps media for later builds)."""

    name = names.FETCH_MEDIA
    default_provides = names.MEDIA

    def execute(self):
        from novaimagebuilder.installer import media as media_mod
        run = self.run
        run.clock.step("media")
        install = run.template.os.install
        run.progress(2, "Fetching the install media from %s"
                     % install.location)
        media = media_mod.fetch(install, run.media_cache,
                                run.parameters.get("install_kernel"),
                                run.parameters.get("install_ramdisk"),
                                run.cancel)
        return dataclasses.asdict(media)


class FindJeos(context.BuildTask):
    """Look the JEOS up in the JEOS cache; provides ``{"key": cache key or
    None (no cache), "entry": the usable entry's id or None}``. Reversion
    strategy: none (it only reads)."""

    name = names.FIND_JEOS
    default_provides = names.JEOS_LOOKUP

    def execute(self, media):
        from novaimagebuilder.images import jeos
        run = self.run
        if run.jeos_cache is None or not run.options.jeos_cache:
            return {"key": None, "entry": None}
        key = jeos.key(run.template, run.parameters, media["sha256"], dict(
            run.backend.jeos_scope(), version=pipeline.version()))
        with run.clock.waiting():
            entry = run.jeos_cache.find(key)
        if entry is not None and not run.jeos_policy.usable(entry):
            run.log.info("The cached JEOS %s has expired", entry.id)
            entry = None
        if entry is not None:
            run.progress(50, "Reusing the cached JEOS %s (%s, stored %s)" % (
                entry.id, entry.name, time.strftime(
                    "%Y-%m-%d %H:%M", time.gmtime(entry.created))))
            run.on_jeos({"cache": "hit", "jeos": entry.id})
        return {"key": key, "entry": entry and entry.id}


class PrepareMedia(context.BuildTask):
    """Make the media usable by machines (Nova: the kernel and ramdisk in
    Glance, shared by sha256); provides the backend's media handle.
    Reversion strategy: none (shared media stay for later builds)."""

    name = names.PREPARE_MEDIA
    default_provides = names.MEDIA_HANDLE

    def execute(self, media, jeos_lookup):
        from novaimagebuilder.installer import media as media_mod
        if jeos_lookup["entry"]:
            return None
        self.run.progress(5, "Preparing the install media")
        return self.run.backend.prepare_media(media_mod.Media(**media))


class BootInstaller(context.BuildTask):
    """Boot the installer with the install script; provides
    ``{"machine": its id, "started": when the install began}``.
    Run again (its process died before its result was saved), the backend
    adopts the installer the first run made instead of making a second.
    Reversion strategy: delete the installer (and what belongs only to it:
    its disk, ramdisk or ISO copy), held here or left by an earlier
    process."""

    name = names.BOOT_INSTALLER
    default_provides = names.INSTALLER

    def execute(self, media_handle, jeos_lookup):
        if jeos_lookup["entry"]:
            return None
        run = self.run
        run.clock.step("install")
        script, kind = run.install_script()
        os_ = run.template.os
        cmdline = " ".join(filter(None, [
            "console=ttyS0", pipeline.SCRIPT_KERNEL_ARGS.get(kind),
            os_.kernelparam, run.options.kernel_args]))
        run.progress(8, "Booting the %s installer" % os_.name)
        machine = run.backend.boot_installer(media_handle, script, kind,
                                             cmdline, run.options.disk_size)
        return {"machine": run.hold(machine), "started": time.time()}

    def revert(self, result, *args, **kwargs):
        if isinstance(result, dict):
            self.run.remove_machine(result["machine"])


class WaitInstaller(context.BuildTask):
    """Wait until the installer has powered itself off (its screen watched
    for questions and silence), within ``timeout`` of the install's start:
    a resumed build waits for the same installer, as long as it has left.
    Reversion strategy: none (the installer is removed by BootInstaller's
    revert)."""

    name = names.WAIT_INSTALLER

    def execute(self, installer):
        if installer is None:
            return
        run = self.run
        os_ = run.template.os
        run.progress(10, "Installing %s %s (waiting for the installer to "
                     "power off)" % (os_.name, os_.version))
        run.wait_installer(run.machine(installer["machine"]),
                           installer["started"])


class CaptureJeos(context.BuildTask):
    """Capture the installed disk; provides the JEOS's id. Reversion
    strategy: discard the captured JEOS (unless the JEOS cache took it)."""

    name = names.CAPTURE_JEOS
    default_provides = names.JEOS

    def execute(self, installer, jeos_lookup):
        if installer is None:
            return jeos_lookup["entry"]
        run = self.run
        run.clock.step("jeos")
        run.progress(50, "Capturing the JEOS disk" +
                     run.backend.capture_limit())
        return run.backend.capture(run.machine(installer["machine"]),
                                   "jeos")

    def revert(self, result, installer=None, **kwargs):
        # (``installer`` named here: TaskFlow hands a revert only the
        # values its signature names.) A JEOS from the cache was not
        # captured by this build: it stays the cache's.
        if installer is not None and isinstance(result, str) and \
                result not in self.run.kept:
            self.run.remove("JEOS %s" % result, self.run.backend.discard,
                            result)


class RemoveInstaller(context.BuildTask):
    """Delete the installer once its disk is captured. Reversion strategy:
    none."""

    name = names.REMOVE_INSTALLER

    def execute(self, installer):
        if installer is not None:
            machine = self.run.machine(installer["machine"])
            self.run.backend.delete(machine)
            self.run.release(installer["machine"])
            self.run.log.info("Removed %s", machine)


class KeepJeos(context.BuildTask):
    """Make the captured JEOS a JEOS cache entry and prune expired ones;
    provides what the cache did (``{"cache": "hit"|"stored"|"off",
    "jeos": entry id}``) and the disk to customize. Reversion strategy:
    none (a stored entry is the cache's, for later builds)."""

    name = names.KEEP_JEOS

    def execute(self, jeos, jeos_lookup, installer):
        from novaimagebuilder.images import jeos as jeos_mod
        run = self.run
        if installer is None:
            return {"cache": "hit", "jeos": jeos}, jeos
        if jeos_lookup["key"] is None:
            run.on_jeos({"cache": "off"})
            return {"cache": "off"}, jeos
        with run.clock.waiting():
            stored = run.jeos_cache.add(jeos, jeos_lookup["key"],
                                        jeos_mod.describe(run.template),
                                        run.build_id)
        run.kept.add(jeos)
        run.log.info("Stored the JEOS in the JEOS cache (%s) as %s",
                     run.jeos_cache.where, stored.id)
        try:
            with run.clock.waiting():
                run.jeos_cache.prune(run.jeos_policy, keep={stored.id},
                                     log=run.log)
        except Exception as exc:  # an old entry left is no reason to fail
            run.log.warning("Could not remove expired JEOS cache entries: "
                            "%s", exc)
        info = {"cache": "stored", "jeos": stored.id}
        run.on_jeos(info)
        return info, stored.id


class DiscardJeos(context.BuildTask):
    """Discard the JEOS once the image is made, unless the JEOS cache keeps
    it (or it came from there). Reversion strategy: none."""

    name = names.DISCARD_JEOS

    def execute(self, jeos, jeos_info):
        if jeos_info["cache"] == "off":
            self.run.backend.discard(jeos)
            self.run.log.info("Removed JEOS %s", jeos)
