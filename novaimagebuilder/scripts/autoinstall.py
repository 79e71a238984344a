"""Subiquity autoinstall for Ubuntu 20.04 and later (older Ubuntu: preseed;
installscript.GENERATORS chooses by version).

The text is ``#cloud-config`` user data with an ``autoinstall:`` key: the
live installer's cloud-init reads it from the config drive (or the
metadata service) and hands it to subiquity; the ``autoinstall`` kernel
argument skips subiquity's confirmation. No ``ds=`` argument is needed:
cloud-init finds the config drive by its label, as on any Nova server.

It does what the other generators do (see installscript): mirror or ISO
(through the build's proxy, the ``proxy`` key, removed from the installed
system unless it persists),
root password (SHA-512 crypt hash, or locked), ``default_user`` with
passwordless sudo, ``ssh_public_key``, ``install_disk``, openssh-server,
sudo and cloud-init, a serial console on the installed system, and a
power-off at the end. Users and keys are made by late-commands, not by
subiquity's ``identity``: subiquity pins the installed system's cloud-init
to the installer's own data (``99-installer.cfg``), which the
late-commands remove so the JEOS reads the cloud's data like a cloud
image (the build's SSH key arrives that way).

``validate(text)`` checks an operator's autoinstall (YAML, ``version: 1``,
power-off) before anything is created.
"""

import shlex
import urllib.parse

import yaml

from novaimagebuilder.scripts import inputs

_CONSOLE = "console=tty0 console=ttyS0,115200n8"
#: What subiquity leaves that would keep the JEOS from reading the cloud's
#: data (datasource pinned to "None"; cloud-init disabled after first boot).
_INSTALLER_CLOUD_INIT = ("/target/etc/cloud/cloud.cfg.d/99-installer.cfg",
                         "/target/etc/cloud/ds-identify.cfg",
                         "/target/etc/cloud/cloud-init.disabled")
#: Where subiquity/curtin leave the ``proxy`` in the installed system (apt,
#: snapd); removed unless the proxy persists.
_INSTALLED_PROXY = ("/target/etc/apt/apt.conf.d/90curtin-aptproxy",
                    "/target/etc/systemd/system/snapd.service.d/"
                    "snap_proxy.conf")


def _mirror_uri(url):
    """The archive root of an install URL (".../ubuntu/dists/noble/..." ->
    ".../ubuntu")."""
    parts = urllib.parse.urlsplit(url)
    path = parts.path.split("/dists/", 1)[0].rstrip("/")
    return urllib.parse.urlunsplit((parts.scheme, parts.netloc, path, "", ""))


def _late_commands(template, account, key, drop_proxy=False):
    quote = shlex.quote
    removed = _INSTALLER_CLOUD_INIT + (_INSTALLED_PROXY if drop_proxy else ())
    commands = ["rm -f " + " ".join(removed),
                f"echo {inputs.hostname(template)} > /target/etc/hostname"]
    if template.os.rootpw:
        entry = "root:" + inputs.password_hash(template.os.rootpw)
        # On stdin, not in chpasswd's arguments.
        commands.append(f"printf '%s\\n' {quote(entry)} | "
                        "chroot /target chpasswd -e")
    else:
        commands.append("curtin in-target -- passwd --lock root")
    if account:
        sudoers = f"/target/etc/sudoers.d/90-imgfac-{account}"
        commands += [
            "curtin in-target -- useradd --create-home --shell /bin/bash "
            f"--groups sudo {account}",
            f"printf '%s\\n' {quote(inputs.sudoers_line(account))} > {sudoers}",
            f"chmod 0440 {sudoers}"]
    if key:
        owner = account or "root"
        home = f"/home/{owner}" if account else "/root"
        commands += [
            f"mkdir -p /target{home}/.ssh",
            f"printf '%s\\n' {quote(key)} >> /target{home}/.ssh/authorized_keys",
            f"chmod 0700 /target{home}/.ssh",
            f"chmod 0600 /target{home}/.ssh/authorized_keys",
            f"curtin in-target -- chown -R {owner}:{owner} {home}/.ssh"]
    grub = "/target/etc/default/grub.d/90-imgfac-console.cfg"
    setting = f'GRUB_CMDLINE_LINUX="$GRUB_CMDLINE_LINUX {_CONSOLE}"'
    commands += [
        "mkdir -p /target/etc/default/grub.d",
        f"printf '%s\\n' {quote(setting)} > {grub}",
        "curtin in-target -- update-grub"]
    return commands


def autoinstall(template, parameters=None):
    """The autoinstall user data for ``template``: ``(text, "autoinstall")``."""
    user, key, disk = inputs.account(parameters)
    proxy, persist = inputs.install_proxy(template, parameters)
    account = user or (None if template.os.rootpw else "ubuntu")
    config = {
        "version": 1,
        "refresh-installer": {"update": False},
        "locale": "en_US.UTF-8",
        "keyboard": {"layout": "us"},
        "timezone": "Etc/UTC",
        "apt": {"geoip": False},
        "storage": {"layout": {"name": "direct",
                               "match": {"path": f"/dev/{disk}"}}},
        "ssh": {"install-server": True},
        "packages": ["openssh-server", "sudo", "cloud-init"],
        # Present so subiquity needs no identity: the late-commands make
        # the user.
        "user-data": {},
        "late-commands": _late_commands(template, account, key,
                                        bool(proxy) and not persist),
        "shutdown": "poweroff",
    }
    if proxy:
        config["proxy"] = proxy
    if template.os.install.type == "url":
        config["apt"].update({
            "preserve_sources_list": False,
            "primary": [{"arches": ["default"],
                         "uri": _mirror_uri(template.os.install.url)}]})
    header = (f"#cloud-config\n"
              f"# Autoinstall generated by imgfac-nova for '{template.name}'\n"
              f"# ({template.os.name} {template.os.version} "
              f"{template.os.arch}); the install powers off at the end.\n")
    body = yaml.safe_dump({"autoinstall": config}, sort_keys=False,
                          default_flow_style=False, width=1000)
    return header + body, "autoinstall"


def validate(text, source="install_script"):
    """Check an operator's autoinstall user data: YAML with one
    ``autoinstall`` mapping holding ``version: 1`` and ``shutdown:
    poweroff``. Raises InstallScriptError with a one-line reason."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{source}:{mark.line + 1}" if mark else source
        problem = getattr(exc, "problem", None) or "not valid YAML"
        raise inputs.InstallScriptError(f"{where}: not valid YAML: {problem}") \
            from None
    config = data.get("autoinstall") if isinstance(data, dict) else None
    if not isinstance(config, dict):
        raise inputs.InstallScriptError(
            f"{source}: the autoinstall key must hold a mapping")
    if config.get("version") != 1:
        raise inputs.InstallScriptError(
            f"{source}: autoinstall needs 'version: 1' (subiquity knows no "
            "other)")
    if config.get("shutdown") != "poweroff":
        raise inputs.InstallScriptError(
            f"{source}: the autoinstall does not power off at the end; add "
            "'shutdown: poweroff' so the build sees the install finish")
    return config
