"""What every install script generator reads from the template and the
build parameters (the account, its SSH key, the install disk, the
installer's proxy, the hostname, the root password's crypt hash, UEFI), and
the error they raise. installscript, kickstart, preseed and autoinstall
import it; it imports none of them."""
import re

from passlib.hash import sha512_crypt

from novaimagebuilder import errors

DEFAULT_DISK = "vda"
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


def account(parameters):
    """``(default user or None for root, SSH public key or None, install
    disk name)`` of the build parameters, checked."""
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


def uefi(parameters):
    """True when the build's machine boots with UEFI (``firmware``)."""
    return (parameters or {}).get("firmware") == "uefi"


def install_proxy(template, parameters):
    """``(proxy URL for the install URL or None, persist)``."""
    from novaimagebuilder.guest import proxy as proxy_mod
    try:
        proxy = proxy_mod.Proxy.from_parameters(parameters or {})
    except ValueError as exc:
        raise InstallScriptError(str(exc)) from None
    if proxy is None or template.os.install.type != "url":
        return None, False
    return proxy.for_url(template.os.install.url), proxy.persist


def hostname(template):
    """The installed system's hostname, from the template's name."""
    name = re.sub(r"[^a-z0-9-]+", "-", template.name.lower()).strip("-")
    return name[:63].strip("-") or "imgfac"


def sudoers_line(user):
    """The sudoers line giving ``user`` passwordless sudo."""
    return f"{user} ALL=(ALL) NOPASSWD: ALL"


def os_word(os_name):
    """The leading word of an OS name, lower-cased ("RHEL-9" -> "rhel")."""
    return re.match(r"[a-z]*", os_name.strip().lower()).group()
