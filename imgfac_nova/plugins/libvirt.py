"""The libvirt OS plugin: builds base images on this machine as the local
plugin does, with libvirt running the VMs (the Oz path): transient domains
that ``virsh list`` shows, QEMU as libvirt's own user, the build's disks in
a storage pool of its own. Chosen with ``--parameter os_plugin libvirt`` or
the ``os_plugin`` option; needs a running libvirtd."""
import contextlib
import logging
import os
import shutil

from imgfac_nova.plugins import base
from imgfac_nova.plugins import local

LOG = logging.getLogger(__name__)
#: The file in a libvirt build's work directory naming its image store.
STORE_FILE = "store"


class LibvirtOS(local.LocalOS):
    """Installs and customizes the OS in transient libvirt domains."""

    runs_with = "libvirt"
    info = base.PluginInfo(
        type="os", targets=((None, None, None),),
        description="builds base images locally in libvirt domains",
        maintainer="imgfac-nova developers", version="1.0",
        license="Apache-2.0")

    @classmethod
    def preferred(cls, conf):
        """Never by itself: the local plugin needs no daemon."""
        return False

    def check(self, template, parameters):
        """The local plugin's checks, and libvirt reachable."""
        from novaimagebuilder.machines import libvirt_machines
        super().check(template, parameters)
        libvirt_machines.connect(_uri(self.conf)).close()

    def jeos_cache(self, parameters):
        """The local plugin's kind of cache, in a directory of its own (so
        the ``jeos`` verb lists each entry once)."""
        from imgfac_nova.plugins import common
        from novaimagebuilder.machines import local as local_backend
        return local_backend.JeosCache(os.path.join(
            common.jeos_cache_dir(self.conf), "libvirt"))

    def _workdir_parent(self, build):
        """The images directory (libvirt's QEMU user reaches it; the store
        may be private)."""
        os.makedirs(_images_path(self.conf), exist_ok=True)
        return _images_path(self.conf)

    @contextlib.contextmanager
    def _machines(self, build, template, workdir, accel, machine, parameters,
                  **kwargs):
        """A LibvirtBackend with the build's storage pool at ``workdir``
        (stopped afterwards; the work directory's files are the caller's)."""
        from imgfac_nova import config
        from novaimagebuilder.machines import libvirt_machines
        from novaimagebuilder.machines import libvirt_xml
        from novaimagebuilder.machines import machine_model
        from novaimagebuilder import sweep
        os.chmod(workdir, 0o711)  # QEMU's user opens the files it is given
        store = config.storage_path(self.conf)
        with open(os.path.join(workdir, STORE_FILE), "w") as handle:
            handle.write(store + "\n")
        conn = libvirt_machines.connect(_uri(self.conf))
        try:
            pool = libvirt_machines.create_pool(conn, build.identifier,
                                                workdir)
            try:
                yield libvirt_machines.LibvirtBackend(
                    conn, pool, workdir, accel, libvirt_xml.Tag(
                        build.identifier, "", sweep.this_process(), store),
                    level=machine_model.level(template.os.name,
                                              template.os.version),
                    memory_mb=parameters["memory"], cpus=parameters["cpus"],
                    cancel=build.cancel_event, build_id=build.identifier,
                    machine=machine, **kwargs)
            finally:
                libvirt_machines.stop_pool(pool)
        finally:
            conn.close()

    def sweep(self, protected, parameters, dry_run=False):
        """Destroy the domains, stop the storage pools and remove the work
        directories (the pools' volumes) of this store's builds that
        ``protected`` does not keep. Without libvirtd there is nothing of
        it to sweep but work directories."""
        from imgfac_nova import config
        from novaimagebuilder import errors
        from novaimagebuilder.machines import libvirt_machines
        from novaimagebuilder import sweep
        store = config.storage_path(self.conf)
        workdirs = {path: found for path, found in local._workdirs(
            _images_path(self.conf)).items()
            if _store_of(path) in (store, None)}
        ours = {build for build, _ in workdirs.values()}
        owners = {build: owner for build, owner in workdirs.values()}
        found = []
        domains, pools = {}, {}
        try:
            conn = libvirt_machines.connect(_uri(self.conf))
        except errors.BuildError as exc:
            LOG.debug("No libvirt domains to sweep: %s", exc)
            conn = None
        if conn is not None:
            for tag, domain in libvirt_machines.build_domains(conn):
                if tag.store == store:
                    domains[domain.name()] = domain
                    found.append(sweep.Leftover(
                        tag.build, "libvirt domain", domain.name(),
                        domain.name(), owner=tag.owner or None))
            for build, pool in libvirt_machines.build_pools(conn).items():
                if build in ours:
                    pools[pool.name()] = pool
                    found.append(sweep.Leftover(
                        build, "libvirt storage pool", pool.name(),
                        pool.name(), owner=owners.get(build)))
        for path, (build, owner) in sorted(workdirs.items()):
            found.append(sweep.Leftover(build, "work directory", path, path,
                                        owner=owner))
        kinds = [
            sweep.Kind("libvirt domain", lambda leftover: (
                libvirt_machines.destroy(domains[leftover.id]))),
            sweep.Kind("libvirt storage pool", lambda leftover: (
                libvirt_machines.stop_pool(pools[leftover.id]))),
            sweep.Kind("work directory",
                       lambda leftover: shutil.rmtree(leftover.id))]
        try:
            return sweep.remove(sweep.with_owners(found), kinds, protected,
                                dry_run=dry_run, log=LOG)
        finally:
            if conn is not None:
                conn.close()


def _uri(conf):
    from imgfac_nova import config
    return getattr(conf, "libvirt_uri", None) or config.LIBVIRT_URI


def _images_path(conf):
    from imgfac_nova import config
    return getattr(conf, "libvirt_images_path", None) or \
        config.LIBVIRT_IMAGES_PATH


def _store_of(workdir):
    """The image store a libvirt work directory belongs to (its
    :data:`STORE_FILE`), None when it does not say."""
    try:
        with open(os.path.join(workdir, STORE_FILE)) as handle:
            return handle.read().strip() or None
    except OSError:
        return None
