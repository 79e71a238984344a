"""Unattended install scripts: generated from a TDL, or given by the operator.

``generate(template, parameters)`` returns ``(text, kind)``: a kickstart
for Fedora, RHEL and relatives (the releases in kickstart.CLAIMED), a
preseed for Debian and Ubuntu before 20.04, a subiquity autoinstall for
Ubuntu 20.04 and later (autoinstall.py). The generator is chosen from
``GENERATORS`` by the leading word of the TDL's OS name ("RHEL-9" ->
"rhel") and its version; ``register`` adds or replaces one.
``for_build`` gives what a build uses: the operator's ``install_script``
(checked by ``from_parameter``) or the generated script.

Every script installs from the TDL's URL (or the install CD), sets the
root password from the TDL (SHA-512 crypt hash; locked when the TDL has
none), puts openssh-server, sudo and cloud-init on the disk (cloud-init
installs the build's SSH key from the config drive when the JEOS is
booted for customization), and POWERS OFF at the end: the orchestrator
watches for the power-off to know the install finished.

Parameters used (all optional): ``default_user`` (created with
passwordless sudo, no password), ``ssh_public_key`` (authorized for
that user, or root), ``install_disk`` (device name, default "vda"),
``http_proxy`` / ``https_proxy`` (the installer fetches through the one
for its mirror's scheme: preseed ``mirror/<protocol>/proxy``, kickstart
``url --proxy``, autoinstall ``proxy``; what the installer leaves of it
in the installed system is removed unless ``proxy_persist``).

The texts are written here, not copied from Oz's auto files. The root
password (plain or hashed) is never logged.
"""

import base64
import logging
import re
import shlex
import urllib.parse

from passlib.hash import sha512_crypt

from novaimagebuilder import errors
from novaimagebuilder import scrub

LOG = logging.getLogger(__name__)

DEFAULT_DISK = "vda"
MASK = "***"
#: Crypt hashes taken as they are: SHA-256/512 crypt, yescrypt, bcrypt.
HASH_PREFIXES = ("$5$", "$6$", "$y$", "$2b$", "$2y$")
#: Crypt hashes refused as too weak to protect a password.
WEAK_HASH_PREFIXES = {"$1$": "MD5-crypt ($1$)", "$md5": "Sun MD5-crypt ($md5)",
                      "$3$": "NT hash ($3$)"}


class InstallScriptError(errors.BuildError, ValueError):
    """No install script can be made (or the given one cannot work)."""


# ---------------------------------------------------------------- passwords

def password_hash(password):
    """A crypt hash for ``password`` (SHA-512, 100,000 rounds, random
    salt); a value that already is one is kept."""
    if password.startswith(HASH_PREFIXES):
        return password
    return sha512_crypt.using(rounds=100000).hash(password)


def weak_hash(password):
    """The name of the weak crypt scheme ``password`` is a hash of
    (MD5-crypt and its relatives), or None."""
    return next((name for prefix, name in WEAK_HASH_PREFIXES.items()
                 if password.startswith(prefix)), None)


# ---------------------------------------------------------------- helpers

def _parameters(parameters):
    parameters = dict(parameters or {})
    user = (parameters.get("default_user") or "").strip() or None
    if user == "root":
        user = None
    if user and not re.fullmatch(r"[a-z_][a-z0-9_-]{0,31}", user):
        raise InstallScriptError(f"default_user '{user}' is not a valid user "
                                 "name (lower-case letters, digits, _ and -)")
    key = " ".join((parameters.get("ssh_public_key") or "").split()) or None
    if key and not re.fullmatch(
            r"(ssh|ecdsa|sk)-[A-Za-z0-9@.-]+ [A-Za-z0-9+/]+={0,2}"
            r"( [^\"'`$\\]*)?", key):
        raise InstallScriptError("ssh_public_key is not an OpenSSH public key "
                                 "line ('TYPE BASE64 [comment]')")
    disk = (parameters.get("install_disk") or DEFAULT_DISK).strip()
    disk = disk.removeprefix("/dev/")
    if not re.fullmatch(r"[A-Za-z0-9/_-]+", disk):
        raise InstallScriptError(f"install_disk '{disk}' is not a disk name")
    return user, key, disk


def _install_proxy(template, parameters):
    """``(proxy URL for the install URL or None, persist)``."""
    from novaimagebuilder.guest import proxy as proxy_mod
    try:
        proxy = proxy_mod.Proxy.from_parameters(parameters or {})
    except ValueError as exc:
        raise InstallScriptError(str(exc)) from None
    if proxy is None or template.os.install.type != "url":
        return None, False
    return proxy.for_url(template.os.install.url), proxy.persist


def _uefi(parameters):
    """True when the build's machine boots with UEFI (``firmware``)."""
    return (parameters or {}).get("firmware") == "uefi"


def _hostname(template):
    name = re.sub(r"[^a-z0-9-]+", "-", template.name.lower()).strip("-")
    return name[:63].strip("-") or "imgfac"


def _sudoers_line(user):
    return f"{user} ALL=(ALL) NOPASSWD: ALL"


def _b64(text):
    return base64.b64encode(text.encode("utf-8")).decode("ascii")


# ---------------------------------------------------------------- kickstart

def kickstart(template, parameters=None):
    """A kickstart (Fedora, RHEL, CentOS Stream, Rocky, Alma, OL), for the
    releases novaimagebuilder.scripts.kickstart claims."""
    from novaimagebuilder.scripts import kickstart as ks
    ks.require_claimed(template)
    user, key, disk = _parameters(parameters)
    install = template.os.install
    proxy, _ = _install_proxy(template, parameters)
    if install.type == "url":
        source = f'url --url="{install.url}"'
        if proxy:
            source += f' --proxy="{proxy}"'
    else:
        source = "cdrom"
    if template.os.rootpw:
        root = f"rootpw --iscrypted {password_hash(template.os.rootpw)}"
    else:
        root = "rootpw --lock"
    uefi = _uefi(parameters)
    lines = [
        f"# Kickstart generated by imgfac-nova for '{template.name}'",
        f"# ({template.os.name} {template.os.version} {template.os.arch})",
        "text",
        "skipx",
        source,
        "lang en_US.UTF-8",
        "keyboard us",
        "timezone UTC --utc",
        f"network --bootproto=dhcp --activate --hostname={_hostname(template)}",
        root,
        "firewall --enabled --service=ssh",
        "services --enabled=sshd",
        f"ignoredisk --only-use={disk}",
        "zerombr",
        f"clearpart --all --initlabel --drives={disk}",
        # On UEFI firmware autopart adds the EFI system partition.
        "autopart --type=plain --nohome",
        "bootloader " + ("" if uefi else "--location=mbr ")
        + f'--boot-drive={disk} '
        '--append="console=tty0 console=ttyS0,115200n8"',
    ]
    if user:
        lines.append(f"user --name={user} --groups=wheel --lock")
    if key:
        lines.append(f'sshkey --username={user or "root"} "{key}"')
    lines += ["# Power off (not reboot): the build waits for the power-off.",
              "poweroff",
              "",
              "%packages",
              "@core",
              "openssh-server",
              "sudo",
              "cloud-init"]
    if uefi:  # the signed shim, which Secure Boot needs, and its GRUB
        lines += ["shim-x64", "grub2-efi-x64", "efibootmgr"]
    lines += ["%end"]
    if user:
        sudoers = f"/etc/sudoers.d/90-imgfac-{user}"
        lines += ["",
                  "%post --erroronfail",
                  f"echo {shlex.quote(_sudoers_line(user))} > {sudoers}",
                  f"chmod 0440 {sudoers}",
                  "%end"]
    return "\n".join(lines) + "\n", "kickstart"


# ---------------------------------------------------------------- preseed

_SUITES = {
    "debian": {"10": "buster", "11": "bullseye", "12": "bookworm",
               "13": "trixie"},
    "ubuntu": {"18.04": "bionic", "20.04": "focal", "22.04": "jammy",
               "24.04": "noble"},
}


def _mirror(template):
    """(protocol, host[:port], directory, suite) of a URL install."""
    url = urllib.parse.urlsplit(template.os.install.url)
    path = url.path or "/"
    if "/dists/" in path:
        directory, rest = path.split("/dists/", 1)
        suite = rest.split("/", 1)[0]
    else:
        directory = path.rstrip("/")
        word = re.match(r"[a-z]*", template.os.name.lower()).group()
        suite = _SUITES.get(word, {}).get(template.os.version.strip())
        if not suite:
            raise InstallScriptError(
                f"cannot tell the {template.os.name} suite from the install "
                f"URL {template.os.install.url}: give a URL with "
                "/dists/<suite>/ in it")
    return url.scheme, url.netloc.rpartition("@")[2], directory or "/", suite


def preseed(template, parameters=None):
    """A debian-installer preseed (Debian, Ubuntu)."""
    user, key, disk = _parameters(parameters)
    distribution = re.match(r"[a-z]*", template.os.name.lower()).group()
    lines = [
        f"# Preseed generated by imgfac-nova for '{template.name}'",
        f"# ({template.os.name} {template.os.version} {template.os.arch})",
        "d-i debian-installer/locale string en_US.UTF-8",
        "d-i debian-installer/language string en",
        "d-i debian-installer/country string US",
        "d-i keyboard-configuration/xkb-keymap select us",
        "d-i console-setup/ask_detect boolean false",
        "d-i netcfg/choose_interface select auto",
        f"d-i netcfg/get_hostname string {_hostname(template)}",
        "d-i netcfg/get_domain string localdomain",
        # Asked only when DHCP offers no name server (a network with none,
        # a mirror given by address): none, rather than a question.
        "d-i netcfg/get_nameservers string",
        # A name from DHCP would win over get_hostname.
        f"d-i netcfg/hostname string {_hostname(template)}",
        "d-i hw-detect/load_firmware boolean false",
    ]
    proxy, persist = _install_proxy(template, parameters)
    if template.os.install.type == "url":
        protocol, host, directory, suite = _mirror(template)
        lines += [
            "d-i mirror/country string manual",
            f"d-i mirror/protocol string {protocol}",
            f"d-i mirror/{protocol}/hostname string {host}",
            f"d-i mirror/{protocol}/directory string {directory}",
            f"d-i mirror/{protocol}/proxy string {proxy or ''}".rstrip(),
            f"d-i mirror/suite string {suite}",
        ]
    if template.os.rootpw:
        lines += ["d-i passwd/root-login boolean true",
                  "d-i passwd/root-password-crypted password "
                  + password_hash(template.os.rootpw)]
    else:
        lines.append("d-i passwd/root-login boolean false")
    # With root locked the installer insists on a user: make one.
    account = user or (None if template.os.rootpw else distribution)
    if account:
        lines += ["d-i passwd/make-user boolean true",
                  f"d-i passwd/user-fullname string {account}",
                  f"d-i passwd/username string {account}",
                  "d-i passwd/user-password-crypted password !"]
    else:
        lines.append("d-i passwd/make-user boolean false")
    lines += [
        "d-i clock-setup/utc boolean true",
        "d-i time/zone string UTC",
        "d-i clock-setup/ntp boolean false",
        f"d-i partman-auto/disk string /dev/{disk}",
        "d-i partman-auto/method string regular",
        "d-i partman-auto/choose_recipe select atomic",
        "d-i partman-lvm/device_remove_lvm boolean true",
        "d-i partman-md/device_remove_md boolean true",
        "d-i partman-partitioning/confirm_write_new_label boolean true",
        "d-i partman/choose_partition select finish",
        "d-i partman/confirm boolean true",
        "d-i partman/confirm_nooverwrite boolean true",
        "d-i apt-setup/cdrom/set-first boolean false",
        # Only the install mirror: security and updates servers may be
        # unreachable from the build network.
        "d-i apt-setup/services-select multiselect",
        "d-i apt-setup/non-free-firmware boolean false",
        "d-i apt-setup/contrib boolean false",
        "d-i apt-setup/non-free boolean false",
        "tasksel tasksel/first multiselect standard, ssh-server",
        "d-i pkgsel/include string openssh-server sudo cloud-init",
        "d-i pkgsel/upgrade select none",
        "popularity-contest popularity-contest/participate boolean false",
        "d-i grub-installer/only_debian boolean true",
        f"d-i grub-installer/bootdev string /dev/{disk}",
    ]
    if _uefi(parameters):
        # partman's recipe adds the EFI system partition on UEFI; GRUB (and
        # the signed shim) also go to the removable path, so the disk boots
        # with the empty NVRAM a cloud gives it.
        lines.append("d-i grub-installer/force-efi-extra-removable boolean "
                     "true")
    lines += [
        # The installed system talks on the serial console: the build reads
        # the guest's SSH host keys from it.
        "d-i debian-installer/add-kernel-opts string console=tty0 "
        "console=ttyS0,115200n8",
    ]
    late = _late_command(account, key, proxy and not persist)
    if late:
        lines.append(f"d-i preseed/late_command string {late}")
    lines += [
        "d-i finish-install/reboot_in_progress note",
        "# Power off (not reboot): the build waits for the power-off.",
        "d-i debian-installer/exit/poweroff boolean true",
    ]
    return "\n".join(lines) + "\n", "preseed"


def _late_command(account, key, drop_proxy=False):
    """Shell run in the installer at the end: sudo, the SSH key, and the
    mirror proxy taken out of the installed apt configuration."""
    steps = []
    if drop_proxy:
        # apt-setup writes the mirror proxy to the installed apt.conf.
        steps.append("sed -i '/^Acquire::[a-z]*::Proxy /d' "
                     "/target/etc/apt/apt.conf")
    if account:
        sudoers = f"/etc/sudoers.d/90-imgfac-{account}"
        steps.append(f"echo {_b64(_sudoers_line(account))} | base64 -d "
                     f"> /target{sudoers}; chmod 0440 /target{sudoers}")
    if key:
        owner = account or "root"
        home = f"/home/{owner}" if account else "/root"
        steps.append(
            f"mkdir -p /target{home}/.ssh; echo {_b64(key)} | base64 -d "
            f">> /target{home}/.ssh/authorized_keys; "
            f"chmod 0700 /target{home}/.ssh; "
            f"chmod 0600 /target{home}/.ssh/authorized_keys; "
            f"in-target chown -R {owner}:{owner} {home}/.ssh")
    return "; ".join(steps)


# ---------------------------------------------------------------- registry

def _autoinstall(template, parameters):
    from novaimagebuilder.scripts import autoinstall
    return autoinstall.autoinstall(template, parameters)


#: (leading word of the lower-cased OS name, first version as a tuple of
#: numbers, () for all) -> generator(template, parameters) returning
#: (text, kind). For a template the entry with its word and the highest
#: first version not above the template's version is used.
GENERATORS = {
    ("fedora", ()): kickstart, ("rhel", ()): kickstart,
    ("redhat", ()): kickstart, ("centos", ()): kickstart,
    ("rocky", ()): kickstart, ("rockylinux", ()): kickstart,
    ("alma", ()): kickstart, ("almalinux", ()): kickstart,
    ("ol", ()): kickstart, ("oraclelinux", ()): kickstart,
    ("debian", ()): preseed,
    # Ubuntu's server installer is subiquity from 20.04 on.
    ("ubuntu", ()): preseed, ("ubuntu", (20, 4)): _autoinstall,
}


def os_word(os_name):
    """The leading word of an OS name, lower-cased ("RHEL-9" -> "rhel")."""
    return re.match(r"[a-z]*", os_name.strip().lower()).group()


def version_tuple(version):
    """The numbers of a version ("24.04" -> (24, 4), "9" -> (9,))."""
    return tuple(int(n) for n in re.findall(r"\d+", version or ""))


def register(os_word, generator, since=None):
    """Use ``generator(template, parameters) -> (text, kind)`` for OS names
    starting with ``os_word`` (e.g. "fedora"), from version ``since``
    ("20.04"; None: every version) on."""
    GENERATORS[os_word.lower(), version_tuple(since)] = generator


def generator_for(template):
    """The generator registered for ``template``'s OS and version, or None."""
    word = os_word(template.os.name)
    version = version_tuple(template.os.version)
    found = sorted(since for w, since in GENERATORS
                   if w == word and since <= version)
    return GENERATORS[word, found[-1]] if found else None


def generate(template, parameters=None):
    """The install script for ``template``: ``(text, kind)``."""
    generator = generator_for(template)
    if generator is None:
        raise InstallScriptError(
            f"no install script generator for '{template.os.name} "
            f"{template.os.version}' (known: "
            + ", ".join(sorted({word for word, _ in GENERATORS}))
            + "); give one with the install_script parameter")
    return generator(template, parameters)


def for_build(template, parameters):
    """The install script a build of ``template`` uses: the operator's
    ``install_script`` (checked by ``from_parameter``), else the generated
    one. ``(text, kind)``."""
    given = (parameters or {}).get("install_script")
    if given:
        return from_parameter(given, template)
    return generate(template, parameters)


# ---------------------------------------------------------------- given scripts

_KICKSTART_WORDS = re.compile(
    r"^\s*(%packages|%post|%pre|url\s+--url|rootpw\b|autopart\b|clearpart\b"
    r"|bootloader\b|poweroff\b|shutdown\b|reboot\b|halt\b|cdrom\b)", re.M)
_PRESEED_LINE = re.compile(r"^\s*d-i\s+\S+/\S+\s+\S+", re.M)


def script_kind(text):
    """"kickstart", "preseed", "autoinstall", "autounattend" or None."""
    stripped = text.lstrip()
    if _PRESEED_LINE.search(text):
        return "preseed"
    if stripped.startswith("#cloud-config") and re.search(
            r"^autoinstall:", text, re.M):
        return "autoinstall"
    if stripped.startswith("<") and "unattend" in text[:2000].lower():
        return "autounattend"
    if _KICKSTART_WORDS.search(text):
        return "kickstart"
    return None


def from_parameter(text, template=None):
    """An operator's ``install_script``: ``(text, kind)``, kind as
    ``script_kind`` says (None when unknown; the script is used as is).

    Refused with a one-line reason: empty or binary text, a kickstart that
    reboots or halts instead of powering off, a preseed without power-off,
    an autoinstall that is not YAML, lacks ``version: 1`` or does not power
    off, and, for a ``template`` of an anaconda OS (Fedora, RHEL and
    relatives), a kickstart pykickstart rejects for that release
    (``install_script:LINE: ...``; its warnings are logged).
    """
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError:
            raise InstallScriptError("install_script is not UTF-8 text") \
                from None
    if not text.strip():
        raise InstallScriptError("install_script is empty")
    if "\0" in text:
        raise InstallScriptError("install_script is not text (it has NUL bytes)")
    kind = script_kind(text)
    if kind == "kickstart":
        finish = re.findall(r"^\s*(poweroff|shutdown|reboot|halt)\b", text, re.M)
        if finish and not {"poweroff", "shutdown"} & set(finish):
            raise InstallScriptError(
                f"install_script: the kickstart ends with '{finish[-1]}'; it "
                "must power off ('poweroff') so the build sees the install "
                "finish")
    elif kind == "preseed" and not re.search(
            r"^\s*d-i\s+debian-installer/exit/poweroff\s+boolean\s+true\b",
            text, re.M):
        raise InstallScriptError(
            "install_script: the preseed does not power off at the end; add "
            "'d-i debian-installer/exit/poweroff boolean true' so the build "
            "sees the install finish")
    elif kind == "autoinstall":
        from novaimagebuilder.scripts import autoinstall
        autoinstall.validate(text)
    _refuse_weak_hashes(text)
    if kind == "kickstart" and template is not None and \
            generator_for(template) is kickstart:
        from novaimagebuilder.scripts import kickstart as ks
        passwords = {password for _, password, _ in _passwords(text)}
        for warning in ks.parse(text, template.os.name, template.os.version,
                                "install_script"):
            for password in passwords:  # pykickstart may quote a line
                warning = warning.replace(password, MASK)
            LOG.warning("install_script: %s", warning)
    return text, kind


#: Lines of a kickstart, preseed or autoinstall that may hold a password.
_PASSWORD_LINE = re.compile(
    r"^\s*(?:(?P<command>rootpw|user|sshpw)|\S+\s+passwd/\S*password\S*"
    r"\s+\S+|password:)\s+(?P<rest>.*)$")


#: A traditional DES crypt hash: 13 characters of the crypt alphabet.
_DES_HASH = re.compile(r"[./0-9A-Za-z]{13}")


def _passwords(text):
    """``(line number, password, whether it is a hash)`` of the password
    lines of a kickstart, preseed or autoinstall."""
    for number, line in enumerate(text.split("\n"), start=1):
        match = _PASSWORD_LINE.match(line)
        if not match:
            continue
        hashed = "crypted" in line or line.strip().startswith("password:")
        found = []
        if match["command"]:
            _shown_kickstart_line(line, lambda word: found.append(word) or word)
        else:
            found.append(match["rest"])
        for password in found:
            password = password.strip().strip("'\"")
            if password:
                yield number, password, hashed


def _refuse_weak_hashes(text):
    """InstallScriptError naming the line of a weak password hash: MD5-crypt
    and its relatives anywhere, DES crypt where the line says its password
    is a hash."""
    for number, password, hashed in _passwords(text):
        name = weak_hash(password) or (
            "DES crypt" if hashed and _DES_HASH.fullmatch(password) else None)
        if name:
            raise InstallScriptError(
                f"install_script:{number}: the password hash is {name}, too "
                "weak; give a SHA-512 ($6$) or yescrypt ($y$) hash")


# ---------------------------------------------------------------- showing

_PRESEED_PASSWORD = re.compile(
    r"^(?P<owner>\s*\S+\s+passwd/(?:root|user))-password(?:-again)?"
    r"\s+\S+\s+(?P<value>.*?)\s*$")


def _shown_kickstart_line(line, hide=None):
    """A kickstart line with a plain-text password replaced by its hash;
    with ``hide``, any password (hashed too) by ``hide(password)``."""
    try:
        words = shlex.split(line, comments=True)
    except ValueError:
        return line
    if not words or words[0] not in ("rootpw", "sshpw", "user") or \
            ("--iscrypted" in words and hide is None):
        return line
    shown, changed, value_next = [words[0]], False, False
    if hide is None:  # shown as a hash
        hide = password_hash
        shown.append("--iscrypted")
    for word in words[1:]:
        if word == "--plaintext" and shown[1:2] == ["--iscrypted"]:
            continue
        if value_next or (words[0] != "user" and not word.startswith("-")):
            word, changed, value_next = hide(word), True, False
        elif word.startswith("--password="):
            word, changed = "--password=" + hide(word[11:]), True
        elif word == "--password":
            value_next = True
        shown.append(word)
    return shlex.join(shown) if changed else line


def for_display(text, kind, template=None):
    """``text`` as it may be shown to the operator: plain-text passwords of
    a kickstart (``rootpw``, ``sshpw``, ``user --password``) or preseed
    (``passwd/*-password``) replaced by their SHA-512 crypt hash, and the
    template's plain root password, wherever else it appears, by ``***``."""
    lines = []
    for line in text.split("\n"):
        if kind == "kickstart":
            line = _shown_kickstart_line(line)
        elif kind == "preseed":
            match = _PRESEED_PASSWORD.match(line)
            if match:
                line = (f"{match['owner']}-password-crypted password "
                        + password_hash(match["value"]))
        lines.append(line)
    shown = "\n".join(lines)
    rootpw = template.os.rootpw if template is not None else None
    if rootpw and not rootpw.startswith(HASH_PREFIXES):
        shown = shown.replace(rootpw, "***")
    return shown


#: A crypt hash in a script: its scheme, then salt and digest.
_CRYPT_HASH = re.compile(
    r"\$(?:1|2[abxy]|3|5|6|7|y|gy|md5|sha1)[$,][^\s'\"]*")


def masked(text, hidden=()):
    """An operator's install script as a record may keep it: every
    password, plain or hashed, and the credentials in every URL replaced
    by ``***`` (kickstart ``rootpw``, ``sshpw``, ``user --password``,
    preseed ``passwd/*password*``, autoinstall ``password:``; a crypt hash
    anywhere), and so are the words in ``hidden`` (the template's root
    password) wherever they stand alone."""
    lines = []
    for line in text.split("\n"):
        match = _PASSWORD_LINE.match(line)
        if match and match["command"]:
            line = _shown_kickstart_line(line, lambda word: MASK)
        elif match:
            line = line[:match.start("rest")] + MASK
        lines.append(line)
    shown = _CRYPT_HASH.sub(MASK, "\n".join(lines))
    for word in filter(None, hidden):
        shown = re.sub(r"(?<!\w)%s(?!\w)" % re.escape(word), MASK, shown)
    return scrub.scrub(shown)
