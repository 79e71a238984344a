"""Which kickstart versions we claim, and their check by pykickstart.

pykickstart is the parser anaconda itself uses; each OS release has a
"handler" for the commands and options that release understands. We
generate kickstarts only for the releases in ``CLAIMED`` (each one is
parsed by its handler in the unit tests, with warnings as failures); an
operator's kickstart (``install_script``) is parsed before anything is
created, with the claimed handler, else the one pykickstart has for that
release, else its newest.
"""

import re
import warnings

from novaimagebuilder.scripts.inputs import InstallScriptError
from novaimagebuilder.scripts.inputs import os_word

_RHEL_FAMILY = {8: "RHEL8", 9: "RHEL9", 10: "RHEL10"}

#: Leading word of the lower-cased OS name -> {major version: pykickstart
#: handler}. Fedora 46 is rawhide in pykickstart 3.78: not claimed.
CLAIMED = {
    "fedora": {v: f"F{v}" for v in range(40, 46)},
    "rhel": _RHEL_FAMILY, "redhat": _RHEL_FAMILY,
    "centos": {9: "RHEL9", 10: "RHEL10"},  # CentOS Stream
    "rocky": _RHEL_FAMILY, "rockylinux": _RHEL_FAMILY,
    "alma": _RHEL_FAMILY, "almalinux": _RHEL_FAMILY,
    "ol": _RHEL_FAMILY, "oraclelinux": _RHEL_FAMILY,
}


def _major(os_name, version):
    """The major release: from an Oz-style name ("RHEL-9", version "4"), else
    from the version ("9.4", "40")."""
    match = re.search(r"-(\d+)\s*$", os_name) or re.match(r"\s*(\d+)",
                                                          version)
    return int(match.group(1)) if match else None


def claimed_handler(os_name, version):
    """The pykickstart handler name for a claimed release, else None."""
    return CLAIMED.get(os_word(os_name), {}).get(_major(os_name, version))


def describe_claims(os_name):
    """The claimed releases of ``os_name``'s family, e.g. "Fedora 40-45"."""
    majors = sorted(CLAIMED.get(os_word(os_name), {}))
    family = re.sub(r"-\d+\s*$", "", os_name.strip())
    if not majors:
        return f"no {family} release"
    if majors == list(range(majors[0], majors[-1] + 1)):
        return f"{family} {majors[0]}-{majors[-1]}"
    return f"{family} " + ", ".join(map(str, majors))


def require_claimed(template):
    """The handler name for ``template``'s release; InstallScriptError when we do
    not generate kickstarts for it."""
    handler = claimed_handler(template.os.name, template.os.version)
    if handler is None:
        raise InstallScriptError(
            f"imgfac-nova does not generate kickstarts for {template.os.name} "
            f"{template.os.version} (it does for "
            f"{describe_claims(template.os.name)}); give one with the "
            "install_script parameter")
    return handler


def _handler_for(os_name, version):
    from pykickstart import version as ksversion
    name = claimed_handler(os_name, version)
    if name is None:
        major = _major(os_name, version)
        prefix = "F" if os_word(os_name) == "fedora" else "RHEL"
        name = f"{prefix}{major}" if major is not None else "DEVEL"
        if name not in ksversion.versionMap:
            name = "DEVEL"
    return ksversion.makeVersion(name)


#: Commands whose lines may hold a password.
_PASSWORD_COMMANDS = ("rootpw", "sshpw", "user")


def _command_at(text, lineno):
    lines = text.splitlines()
    if not lineno or lineno > len(lines):
        return None
    words = lines[lineno - 1].split()
    return words[0] if words else None


def parse(text, os_name, version, source="kickstart"):
    """Parse ``text`` with the handler of ``os_name`` ``version``; returns the
    warnings pykickstart gave (one-line strings). Raises InstallScriptError
    ``"SOURCE:LINE: message"`` when pykickstart rejects a line.

    ``%include`` and ``%ksappend`` name files in the installer, so they are
    not followed.
    """
    from pykickstart import errors as kserrors
    from pykickstart import parser as ksparser
    handler = _handler_for(os_name, version)
    parser = ksparser.KickstartParser(handler, followIncludes=False,
                                      missingIncludeIsFatal=False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            parser.readKickstartFromString(text)
        except kserrors.KickstartError as exc:
            lineno = getattr(exc, "lineno", None)
            message = (getattr(exc, "message", None) or str(exc)).strip()
            message = message.splitlines()[-1] if message else "rejected"
            command = _command_at(text, lineno)
            if command in _PASSWORD_COMMANDS:
                # pykickstart may quote the line, password and all.
                message = (f"this {command} line is not valid (not shown: "
                           "it holds a password)")
            where = f"{source}:{lineno}" if lineno else source
            raise InstallScriptError(
                f"{where}: {message} (pykickstart, {os_name} {version})") \
                from None
    return [" ".join(str(w.message).split()) for w in caught
            if issubclass(w.category, (kserrors.KickstartDeprecationWarning,
                                       kserrors.KickstartParseWarning))]
