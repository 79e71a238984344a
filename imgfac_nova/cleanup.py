"""After builds: sweeping what crashed builds left behind, the OS plugins'
JEOS caches, stopping a running build and deleting images.  ``builder`` is
the :class:`imgfac_nova.build.Builder` whose store, plugins and cloud they
use.
"""
import logging
import os
import shutil

from imgfac_nova import guard
from imgfac_nova import images
from imgfac_nova import resume
from novaimagebuilder import errors
from novaimagebuilder import scrub
from novaimagebuilder import sweep as sweep_mod
from novaimagebuilder import waiter

LOG = logging.getLogger(__name__)

#: Seconds a delete waits for a running build to stop and clean up.
STOP_TIMEOUT = 900


def sweep(builder, values, dry_run=False):
    """Remove what crashed builds left behind: in the store, the
    processes still writing a failed image's data (a conversion's
    qemu-img), that partial data and half-written records, the media
    cache's partial downloads, then every OS and cloud plugin's
    leftovers (the plugins get the guard); never what
    :class:`guard.Guard` protects. Returns ``[(where, Outcome)]`` in
    removal order. A dry run changes nothing, records included."""
    from imgfac_nova.plugins import common
    from novaimagebuilder.installer import media
    from novaimagebuilder.machines import qemu
    keep = guard.Guard(builder.store, builder.still_running,
                       None if dry_run else builder.ended,
                       getattr(builder.conf, "resume_max_age", None))
    cache_dir = common.media_cache_dir(builder.conf)
    downloads = media.MediaCache(cache_dir).partial() \
        if os.path.isdir(cache_dir) else []
    found = [("store", outcome) for outcome in sweep_mod.remove(
        _partial_data(builder, keep) + downloads + [
            sweep_mod.Leftover(None, "partial record", path, path)
            for path in builder.store.stale_temporaries()], [
            sweep_mod.Kind("process", lambda leftover: qemu.kill(
                int(leftover.id)), lambda leftover: qemu.wait_gone(
                    int(leftover.id))),
            sweep_mod.Kind("partial image data", _unlink),
            sweep_mod.Kind("partial record", _unlink),
            sweep_mod.Kind("partial download", _unlink)],
        keep, dry_run=dry_run, explain=scrub.one_line, log=LOG)]
    seen = set()
    for name, cls in sorted(builder.plugins.os_plugins.items()) + sorted(
            builder.plugins.cloud_plugins.items()):
        plugin = cls(builder.conf)
        plugin.cloud_auth = builder.cloud_auth  # a project's, with a trust
        typed = builder.resolve(plugin.parameters, values, name,
                                _all_parameters(builder))
        for outcome in plugin.sweep(keep, typed, dry_run):
            # A push to the build's own cloud is the Nova plugin's
            # tagged image and the provider plugin's: listed once.
            if outcome.leftover.id in seen:
                continue
            seen.add(outcome.leftover.id)
            found.append((name, outcome))
    return found


def _all_parameters(builder):
    """The parameters of every plugin (a sweep or the JEOS cache
    verbs take any plugin's)."""
    return tuple(p for plugins in (builder.plugins.os_plugins,
                                   builder.plugins.cloud_plugins)
                 for cls in plugins.values() for p in cls.parameters)


def jeos_caches(builder, values):
    """``[(plugin name, jeos.Cache)]`` of the OS plugins that keep a JEOS
    cache for these parameters (the Nova plugin only with a cloud)."""
    caches = []
    for name in sorted(builder.plugins.os_plugins):
        plugin = builder.plugin(name)
        typed = builder.resolve(plugin.parameters, values, name,
                                _all_parameters(builder))
        cache = plugin.jeos_cache(typed)
        if cache is not None:
            caches.append((name, cache))
    return caches


def remove_jeos(builder, values, ids=None, dry_run=False):
    """Remove the JEOS cache entries with these ids or keys (every entry
    when None; none with ``dry_run``); returns ``[(plugin name, Entry)]``
    removed (or to remove). An id no cache holds is a BuildError, raised
    before anything is removed."""
    chosen = [(name, cache, entry)
              for name, cache in jeos_caches(builder, values)
              for entry in cache.entries()
              if ids is None or entry.id in ids or entry.key in ids]
    unknown = set(ids or ()) - {entry.id for _, _, entry in chosen} - {
        entry.key for _, _, entry in chosen}
    if unknown:
        raise errors.BuildError("no JEOS cache entry %s"
                                % ", ".join(sorted(unknown)))
    for name, cache, entry in [] if dry_run else chosen:
        cache.remove(entry)
        LOG.info("Removed the JEOS cache entry %s (%s)", entry.id,
                 entry.name)
    return [(name, entry) for name, cache, entry in chosen]


def _partial_data(builder, keep):
    """What failed builds left of their image data: the ``<id>.body``
    and its conversion's ``<id>.body.*`` files and virt-sysprep's
    ``<id>.body.sysprep`` directory (a failed image has no data), after
    the processes still using them."""
    from novaimagebuilder.machines import qemu
    prefixes = {builder.store.body_path(record.identifier): record
                for record in keep.failed()}
    if not prefixes:
        return []
    found = []
    for pid, argv in qemu.processes(None):
        using = [p for p in prefixes if any(p in arg for arg in argv)]
        if using and pid != os.getpid():
            record = prefixes[using[0]]
            found.append(sweep_mod.Leftover(
                record.identifier, "process", str(pid), " ".join(
                    argv)[:200], owner=record.worker))
    directory = builder.store.path
    for name in sorted(os.listdir(directory)):
        path = os.path.join(directory, name)
        record = prefixes.get(path) or prefixes.get(
            path.rsplit(".", 1)[0])
        if record is not None:
            found.append(sweep_mod.Leftover(record.identifier,
                                            "partial image data", path, path,
                                            owner=record.worker))
    return found


def stop(builder, identifier, timeout=STOP_TIMEOUT):
    """Ask the running build of ``identifier`` to stop, whichever
    process runs it, and wait until it has unwound; returns its record.
    A build whose process died (on this host) is not waited for."""
    record = builder.store.get(identifier)
    if record.status not in images.ACTIVE_STATUSES:
        return record
    if record.worker == resume.QUEUED:  # no worker has taken it yet
        record = builder.store.modify(identifier, resume.drop_queued)
        if record.status not in images.ACTIVE_STATUSES:
            return record
    pid = guard.owner_pid(record)
    if pid is not None and not guard.alive(pid):
        return record
    LOG.info("Asking the build of %s (%s) to stop", identifier,
             record.worker)
    builder.store.request_cancel(identifier)
    return waiter.wait_for(
        "waiting for the build of %s to stop" % identifier,
        lambda: builder.store.get(identifier),
        lambda now: now.status not in images.ACTIVE_STATUSES,
        timeout=timeout)


def delete(builder, identifier, values, provider=None, credentials=None):
    """Delete an image (a running build is stopped first): what its
    plugin made, then its record and data."""
    try:
        record = stop(builder, identifier)
    except errors.WaitTimeout as exc:
        return builder.store.update(identifier, status=images.DELETEFAILED,
                                    status_detail={"activity": "Deleting",
                                                   "error": scrub.one_line(exc)})
    builder.store.update(identifier, status=images.DELETING, status_detail={
        "activity": "Deleting", "error": None})
    try:
        plugin = builder.plugin(record.plugin) if record.plugin else None
        sharing = _sharing(builder, record)
        if sharing:
            LOG.info("Keeping Glance image %s: image %s uses it too",
                     *sharing)
        elif record.type == images.PROVIDER_IMAGE and plugin is not None:
            plugin.delete_from_provider(record, provider or record.provider,
                                        credentials, values)
        elif record.type == images.TARGET_IMAGE and plugin is not None:
            plugin.delete_target_image(record, values)
        elif record.type == images.BASE_IMAGE and plugin is not None:
            plugin.delete_image(record, values)
    except Exception as exc:
        LOG.error("Deleting %s failed", identifier, exc_info=True)
        return builder.store.update(identifier, status=images.DELETEFAILED,
                                    status_detail={"activity": "Deleting",
                                                   "error": scrub.one_line(exc)})
    builder.store.remove(identifier)
    record.status = images.DELETED
    record.status_detail = {"activity": "Deleted", "error": None}
    return record


def _sharing(builder, record):
    """``(Glance id, other image id)`` when another COMPLETE image holds
    the Glance image of ``record`` too (a target image made in the cloud
    and its push to that same cloud and project), else None."""
    mine = _glance_ids(record)
    for other in builder.store.list():
        if other.identifier != record.identifier and \
                other.status == images.COMPLETE and \
                mine & _glance_ids(other):
            return sorted(mine & _glance_ids(other))[0], other.identifier
    return None


def _glance_ids(record):
    return {record.properties.get(images.GLANCE_ID_PROPERTY),
            record.identifier_on_provider} - {None}


def _unlink(leftover):
    if os.path.isdir(leftover.id):
        shutil.rmtree(leftover.id)
    else:
        os.unlink(leftover.id)
