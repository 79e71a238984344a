"""What the local and Nova OS plugins share: the pipeline's parameters and
running the pipeline for a build."""
import hashlib
import logging
import os

from imgfac_nova.parameters import Parameter

LOG = logging.getLogger(__name__)


def masked_install_script(text, hidden=()):
    """How a record keeps a given install script: its sha256 and its text
    with passwords, URL credentials and the words in ``hidden`` masked."""
    from novaimagebuilder.scripts import installscript
    return {"sha256": hashlib.sha256(text.encode("utf-8")).hexdigest(),
            "masked": installscript.masked(text, hidden)}


PIPELINE_PARAMETERS = (
    Parameter("default_user", "user the orchestrator logs in as over SSH",
              default="root"),
    Parameter("command_prefix", "put in front of privileged commands over SSH, "
              "e.g. sudo"),
    Parameter("install_script", "install script (kickstart, preseed, ...) to "
              "use instead of the generated one; give it with "
              "--file-parameter (secret: the record keeps its sha256 and "
              "its text with passwords masked)", secret=True,
              masked=masked_install_script),
    Parameter("kernel_args", "extra kernel command line for the installer"),
    Parameter("install_kernel", "URL of the installer kernel, when it is not "
              "where the install tree usually keeps it"),
    Parameter("install_ramdisk", "URL of the installer ramdisk"),
    Parameter("timeout", "seconds the installer may take", type="int",
              default=3600, minimum=1),
    Parameter("inactivity_timeout", "seconds without console output after "
              "which the installer counts as hung", type="int", default=900,
              minimum=1),
    Parameter("ssh_timeout", "seconds to wait for SSH on the customized guest",
              type="int", default=900, minimum=1),
    Parameter("disk_size", "root disk size in GiB (default: the template's "
              "disk size, else 10)", type="int", minimum=1),
    Parameter("keep_on_failure", "keep the failed machine for debugging",
              type="bool", default=False),
    Parameter("ssh_host_keys", "which SSH host keys the guest must "
              "offer: auto (the build makes an Ed25519 host key and gives it "
              "in the user data as cloud-init's ssh_keys; a guest offering "
              "another key is checked against its console), build (only "
              "that key: another one fails the build) or console (no key in "
              "the user data; the console's keys)", default="auto",
              choices=("auto", "build", "console")),
    Parameter("ssh_host_key_policy", "how a key the build did not make is "
              "checked against the keys the guest's console shows: console "
              "(none shown within ssh_host_key_wait: the first key, with a "
              "warning), strict (none shown: the build fails) or any (not "
              "checked, warned)",
              default="console", choices=("console", "strict", "any")),
    Parameter("ssh_host_key_wait", "seconds the guest's console may take to "
              "show its SSH host keys after its SSH server answers",
              type="int", default=60, minimum=0),
    Parameter("ssh_jump_host", "reach the guest through this SSH server "
              "([user@]host[:port]; the tunnel is a direct-tcpip channel)"),
    Parameter("ssh_jump_key", "private key for the jump host; give it with "
              "--file-parameter", secret=True),
    Parameter("ssh_jump_agent", "log in to the jump host with the keys of "
              "the SSH agent (SSH_AUTH_SOCK)", type="bool", default=False),
    Parameter("ssh_jump_known_hosts", "known_hosts lines the jump host's key "
              "must match (give it with --file-parameter; without it the "
              "key is accepted with a warning)"),
    Parameter("http_proxy", "proxy URL (http://host:port/) for http:// "
              "sources of the installer and the guest's package manager",
              secret=True),
    Parameter("https_proxy", "proxy URL for https:// sources (default: "
              "http_proxy)", secret=True),
    Parameter("no_proxy", "comma-separated hosts the package manager "
              "reaches directly"),
    Parameter("proxy_persist", "keep the proxy settings in the image",
              type="bool", default=False),
    Parameter("proxy_tunnel", "the guest reaches the proxies through the "
              "build's SSH connection (a remote forward), for proxies only "
              "the build host reaches", type="bool", default=False),
    Parameter("jeos_cache", "reuse a cached JEOS (installed OS) when nothing "
              "that shapes the install changed, and cache the JEOS a build "
              "installs; false: install afresh and keep nothing",
              type="bool", default=True),
)


#: The machine the build's system is made for (the local plugins' VMs; in
#: Nova the installer disk's properties, which its snapshots keep).
FIRMWARE_PARAMETERS = (
    Parameter("firmware", "firmware of the build machines, which the "
              "installed system boots with: bios (SeaBIOS) or uefi "
              "(OVMF, q35 machine; in Nova hw_firmware_type uefi and "
              "hw_machine_type q35)", default="bios",
              choices=("bios", "uefi")),
    Parameter("secure_boot", "UEFI Secure Boot on, with Microsoft's "
              "keys enrolled (needs firmware uefi; in Nova os_secure_boot "
              "required)", type="bool", default=False),
)


def derived_properties(template, parameters, **kwargs):
    """The Glance properties image_properties.derived gives an image of
    ``template`` built with ``parameters`` (firmware, secure_boot,
    default_user; the CPU traits of its OS's x86-64 level); ``kwargs`` go
    to derived. A one-line BuildError for secure_boot without UEFI."""
    from novaimagebuilder import errors
    from novaimagebuilder.images import image_properties
    from novaimagebuilder.machines import machine_model
    firmware = parameters.get("firmware") or "bios"
    if parameters.get("secure_boot") and firmware != "uefi":
        raise errors.BuildError("secure_boot needs firmware uefi")
    level = machine_model.level(template.os.name, template.os.version)
    return image_properties.derived(
        template.os.name, template.os.version, template.os.arch,
        default_user=parameters.get("default_user"), firmware=firmware,
        secure_boot=bool(parameters.get("secure_boot")),
        description=getattr(template, "description", None),
        cpu_traits=machine_model.features(level, 2), **kwargs)


def check_guest_access(parameters):
    """The jump host and proxy parameters, before anything is created:
    BuildError with one line when they are unusable."""
    from novaimagebuilder import errors
    from novaimagebuilder.guest import proxy
    from novaimagebuilder.guest import jump_host
    try:
        jump_host.jump_host(parameters.get("ssh_jump_host"),
                            parameters.get("ssh_jump_key"),
                            parameters.get("ssh_jump_agent"),
                            parameters.get("ssh_jump_known_hosts"))
        if parameters.get("ssh_host_keys") == "build" and \
                parameters.get("ssh_host_key_policy") == "any":
            raise ValueError("ssh_host_keys build checks the guest's key; "
                             "it cannot go with ssh_host_key_policy any")
        proxies = proxy.Proxy.from_parameters(parameters)
        if parameters.get("proxy_tunnel") and not proxies:
            raise ValueError("proxy_tunnel needs http_proxy or https_proxy")
        if parameters.get("proxy_tunnel") and proxies.persist:
            raise ValueError("a tunnelled proxy cannot persist in the image "
                             "(the tunnel ends with the build): drop "
                             "proxy_persist or proxy_tunnel")
    except ValueError as exc:
        raise errors.BuildError(str(exc)) from None


def pipeline_parameters(template, parameters):
    """The pipeline's view of the build parameters (disk size in bytes)."""
    values = dict(parameters)
    if values.get("disk_size"):
        values["disk_size"] = int(values["disk_size"]) * 1024 ** 3
    else:
        values["disk_size"] = template.disk_size
    return values


def install_script(template, parameters):
    """The install script a build of ``template`` with these (resolved)
    parameters uses, ``(text, kind)``: the given ``install_script`` after its
    checks, or the generated one. Raises InstallScriptError (one line); the
    plugins call it in check(), before anything is created."""
    from novaimagebuilder.scripts import installscript
    return installscript.for_build(template,
                                   pipeline_parameters(template, parameters))


def cloud_configured(conf=None):
    """True when OpenStack credentials are configured for this process:
    ``OS_CLOUD`` or ``OS_AUTH_URL``, as openstacksdk reads them."""
    return bool(os.environ.get("OS_CLOUD") or os.environ.get("OS_AUTH_URL"))


def media_cache_dir(conf=None):
    """Where downloaded install media are kept between builds: the
    media_cache_path option, else a per-user default."""
    configured = getattr(conf, "media_cache_path", None)
    if configured:
        return configured
    if os.geteuid() == 0:
        return "/var/cache/imgfac-nova/media"
    cache_home = os.environ.get("XDG_CACHE_HOME") or os.path.join(
        os.path.expanduser("~"), ".cache")
    return os.path.join(cache_home, "imgfac-nova", "media")


def jeos_cache_dir(conf=None):
    """Where the local plugin keeps cached JEOS disks: the jeos_cache_path
    option, else beside the media cache."""
    configured = getattr(conf, "jeos_cache_path", None)
    return configured or os.path.join(
        os.path.dirname(media_cache_dir(conf).rstrip("/")), "jeos")


def jeos_policy(conf=None):
    """The JEOS cache expiry the configuration sets."""
    from novaimagebuilder.images import jeos
    default = jeos.Policy()
    days = getattr(conf, "jeos_cache_max_age", None)
    return jeos.Policy(
        max_age=default.max_age if days is None else days * 86400,
        max_entries=getattr(conf, "jeos_cache_max_entries", None)
        or default.max_entries)


def _record_jeos(build, info):
    """The record says whether the build reused a cached JEOS, stored its
    own, or used none, and which."""
    found = {"jeos_cache": info["cache"]}
    if info.get("jeos"):
        found["jeos_image"] = info["jeos"]
    build.set_properties(found)


def _media_cache(conf, build):
    """The media cache, opening only URLs the build's caller may reach."""
    from novaimagebuilder.installer import media
    return media.MediaCache(media_cache_dir(conf),
                            getattr(build, "url_check", None))


def run_pipeline(build, backend, template, parameters, conf=None,
                 jeos_cache=None):
    """Run the shared pipeline for ``build`` (with ``jeos_cache``, a
    jeos.Cache, when the plugin keeps one); returns its Result."""
    from novaimagebuilder import runner as build_runner

    runner = build_runner.Pipeline(
        backend, _media_cache(conf, build), progress=build.progress,
        cancel=build.cancel_event, log=LOG, jeos_cache=jeos_cache,
        jeos_policy=jeos_policy(conf), build_id=build.identifier,
        on_jeos=lambda info: _record_jeos(build, info),
        persistence=getattr(build, "flow_persistence", None),
        checkpoint=getattr(build, "checkpoint", None),
        claim=getattr(build, "claim", None),
        owned=getattr(build, "owned", None))
    result = runner.run(template, pipeline_parameters(template, parameters))
    build.set_icicle(result.icicle)
    build.add_timings(result.timings)
    record_ssh(build, result.ssh)
    return result


#: Record properties saying how the guest was reached (Result.ssh keys).
SSH_PROPERTIES = {"address": "ssh_address", "jump_host": "ssh_jump_host",
                  "policy": "ssh_host_key_policy",
                  "fingerprint": "ssh_host_key_fingerprint",
                  "checked": "ssh_host_key_checked",
                  "source": "ssh_host_key_source",
                  "warning": "ssh_host_key_warning"}


def record_ssh(build, reached):
    """Put the guest's SSH address, jump host, host-key policy, accepted
    fingerprint and any warning into the image record."""
    build.set_properties({name: reached[key]
                          for key, name in SSH_PROPERTIES.items()
                          if reached.get(key) is not None})


def target_content(plugin, target, base_image):
    """The template carrying the target content for making ``target`` from
    ``base_image`` (Image Factory's target_content.xml, the
    target_content_file option), or None when there is none."""
    from imgfac_nova import target_content as content
    from imgfac_nova import template as tdl
    includes = content.check(plugin.conf)
    if not includes:
        return None
    template = tdl.parse_template(base_image.template, "base image %s"
                                  % base_image.identifier)
    include = content.for_target(includes, target, template)
    if include is None or include.empty():
        return None
    LOG.info("Target content for %s from %s line %d", target,
             content.configured_file(plugin.conf), include.line)
    return content.as_template(include, template)


def bare_template(base_image):
    """The template of ``base_image`` with nothing to apply: a boot of the
    base that only reads its ICICLE (and runs what the caller adds)."""
    import dataclasses
    from imgfac_nova import template as tdl
    template = tdl.parse_template(base_image.template, "base image %s"
                                  % base_image.identifier)
    return dataclasses.replace(template, repositories=[], packages=[],
                               files=[], precommands=[], commands=[])


def data_format(base_image):
    """The qemu-img format recorded for ``base_image``'s data (its
    ``format`` property): never guessed from the bytes. A one-line
    BuildError when its plugin recorded none."""
    from novaimagebuilder import errors
    fmt = base_image.properties.get("format")
    if not fmt:
        raise errors.BuildError(
            "base image %s has no recorded format (its plugin %s did not "
            "record one): build it again" % (base_image.identifier,
                                             base_image.plugin))
    return fmt


def base_parameters(plugin, base_image):
    """``plugin``'s parameters as the build of ``base_image`` resolved them
    (the record keeps them; secrets redacted, so left out)."""
    from imgfac_nova import parameters as params
    known = {p.name for p in plugin.parameters if not p.secret}
    values = {k: v for k, v in base_image.parameters.items() if k in known
              and v is not None}
    return params.resolve(plugin.parameters, values, base_image.plugin)


def customize_for_target(build, backend, image, template, parameters,
                         conf=None, start=5, end=19, finish=None,
                         describe=None):
    """Boot ``image`` on ``backend``, apply ``template`` (the target
    content), read the ICICLE, run ``finish``, capture and ``describe``
    the result (see
    :meth:`~novaimagebuilder.runner.Pipeline.customize_image`): the
    pipeline's Result, its ICICLE now the target image's. Progress runs
    from ``start`` to ``end`` percent. Its steps are saved with the
    build's, as a base image's are."""
    from novaimagebuilder import runner as build_runner

    def progress(percent, activity):
        build.progress(start + (end - start) * percent // 100, activity)

    runner = build_runner.Pipeline(
        backend, _media_cache(conf, build), progress=progress,
        cancel=build.cancel_event, log=LOG, build_id=build.identifier,
        persistence=getattr(build, "flow_persistence", None),
        checkpoint=getattr(build, "checkpoint", None),
        owned=getattr(build, "owned", None))
    result = runner.customize_image(image, template, pipeline_parameters(
        template, parameters), finish, describe)
    build.set_icicle(result.icicle)
    build.add_timings({"target_" + step: seconds
                       for step, seconds in result.timings.items()})
    return result
