"""Configuration options (oslo.config) and logging set-up (oslo.log)."""
import logging
import os

from oslo_config import cfg

from imgfac_nova import store
from imgfac_nova import template_limits as limits
from novaimagebuilder import scrub

DEFAULT_CONFIG_FILE = "/etc/imgfac-nova/imgfac-nova.conf"
LIBVIRT_URI = "qemu:///system"
#: libvirt's own images directory, which its QEMU user reaches.
LIBVIRT_IMAGES_PATH = "/var/lib/libvirt/images"

_opts = [
    cfg.StrOpt("storage_path",
               sample_default="/var/lib/imgfac-nova/storage",
               help="Directory holding image data (<uuid>.body), build logs "
                    "(<uuid>.log) and, unless [database] connection says "
                    "otherwise, the image records' SQLite database ("
                    "imgfac-nova.sqlite). Default: /var/lib/imgfac-nova/storage "
                    "for root, ~/.local/share/imgfac-nova/storage otherwise."),
    cfg.StrOpt("media_cache_path",
               sample_default="/var/cache/imgfac-nova/media",
               help="Directory caching downloaded install media (kernels, "
                    "ramdisks, ISOs) by checksum between builds. Default: "
                    "/var/cache/imgfac-nova/media for root, "
                    "~/.cache/imgfac-nova/media otherwise."),
    cfg.StrOpt("jeos_cache_path",
               sample_default="/var/cache/imgfac-nova/jeos",
               help="Directory of the local plugin's JEOS cache (installed "
                    "systems reused by builds that would install the same). "
                    "Default: 'jeos' beside the media cache. The Nova plugin "
                    "keeps its entries in Glance."),
    cfg.IntOpt("jeos_cache_max_age", default=30, min=0,
               help="Days a JEOS cache entry is used and kept; 0: no limit."),
    cfg.IntOpt("jeos_cache_max_entries", default=10, min=1,
               help="Most JEOS cache entries kept per cache (the local "
                    "directory, a Glance project); the oldest go first."),
    cfg.StrOpt("os_plugin",
               help="OS plugin to use when more than one installed plugin "
                    "builds the template's OS. The os_plugin build parameter "
                    "overrides it."),
    cfg.StrOpt("libvirt_uri", default=LIBVIRT_URI,
               help="libvirt connection of the libvirt OS plugin's builds."),
    cfg.StrOpt("libvirt_images_path",
               default=LIBVIRT_IMAGES_PATH,
               help="Directory of the libvirt OS plugin's build work "
                    "directories (each a storage pool of its own). libvirt's "
                    "QEMU user must be able to reach it (the image store "
                    "may be private)."),
    cfg.StrOpt("target_content_file",
               help="Image Factory's target content file: repositories, "
                    "packages, files and commands added to the images of "
                    "one target (<template_includes> of <include "
                    "target=... os=... version=... arch=...>), e.g. "
                    "/etc/imgfac-nova/target_content.xml. Unset: none."),
    cfg.IntOpt("max_template_bytes", default=limits.DEFAULT_LIMITS.max_bytes,
               min=1024,
               help="Largest template accepted, in bytes (templates carry "
                    "files inline)."),
    cfg.IntOpt("max_template_elements",
               default=limits.DEFAULT_LIMITS.max_elements, min=100,
               help="Most XML elements a template may have."),
    cfg.IntOpt("resume_max_age", default=24, min=0,
               help="Hours after its last change that a build whose "
                    "process died may still be resumed ('imgfac-nova "
                    "resume', the daemon at start); a sweep leaves its "
                    "resources alone until then. 0: no limit."),
    cfg.IntOpt("cloud_request_timeout", default=300, min=0,
               help="Seconds one HTTP request to a cloud (Keystone, Nova, "
                    "Glance, Neutron, a provider) may take before the build "
                    "step fails; 0: no limit. Long transfers are not "
                    "bounded by it, only silences of this length."),
]


def list_opts():
    """The options for oslo-config-generator."""
    return [("DEFAULT", _opts)]


def set_sample_defaults():
    """oslo-config-generator's hook: the sample shows our defaults of
    oslo.db's ``[database]`` options."""
    from oslo_db import options
    cfg.set_defaults(options.database_opts, **_database_defaults(
        "/var/lib/imgfac-nova/storage"))


def _database_defaults(path):
    # The CLI says a database it cannot reach in one line at once (oslo.db
    # would retry for 100 s); a daemon's operator may raise max_retries.
    return {"connection": store.default_connection(path), "max_retries": 0}


def load(config_files=(), debug=False, verbose=False):
    """A ConfigOpts loaded from ``config_files`` (or the default file), with
    logging set up on stderr."""
    from oslo_log import log

    conf = cfg.ConfigOpts()
    conf.register_opts(_opts)
    log.register_options(conf)
    files = list(config_files)
    if not files and os.path.exists(DEFAULT_CONFIG_FILE):
        files = [DEFAULT_CONFIG_FILE]
    conf([], project="imgfac-nova", default_config_files=files)
    _register_database(conf)
    # paramiko logs every refused attempt while a guest boots as an ERROR
    # with a traceback; those retries are expected: show them only to --debug.
    # keystoneauth warns before every failed version discovery; the error
    # that follows says it in one line.
    conf.set_default("default_log_levels", conf.default_log_levels + [
        "paramiko.transport=%s" % ("DEBUG" if debug else "CRITICAL"),
        "keystoneauth=%s" % ("DEBUG" if debug else "ERROR"),
        "alembic.runtime.plugins=WARNING",
        "kazoo.client=%s" % ("DEBUG" if debug else "WARNING"),
        "taskflow.utils.kazoo_utils=%s" % ("DEBUG" if debug else "ERROR")])
    if debug:
        conf.set_override("debug", True)
    conf.set_override("use_stderr", True)
    log.setup(conf, "imgfac-nova")
    for handler in logging.getLogger().handlers:
        scrub.install(handler)  # no credentials of URLs in any log line
    if not (debug or verbose):
        # Keep the terminal to warnings; build logs still get the details.
        for handler in logging.getLogger().handlers:
            if not isinstance(handler, logging.FileHandler):
                handler.setLevel(logging.WARNING)
    return conf


def template_limits(conf):
    """The template_limits.Limits the configuration sets."""
    return limits.Limits(conf.max_template_bytes, conf.max_template_elements)


def storage_path(conf):
    return conf.storage_path or store.default_path()


def _register_database(conf):
    """oslo.db's ``[database]`` options, the connection defaulting to an
    SQLite file in the storage path."""
    from oslo_db import options
    defaults = _database_defaults(storage_path(conf))
    options.set_defaults(conf, connection=defaults.pop("connection"))
    for name, value in defaults.items():
        conf.set_default(name, value, group="database")


def image_store(conf):
    """The configured image store."""
    return store.ImageStore(storage_path(conf), dict(conf.database.items()))
