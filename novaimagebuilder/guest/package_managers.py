"""The package managers of the guest's OS family (dnf/yum, apt, zypper): the
commands and files that add repositories (with their certificates),
install packages, refresh metadata and set a proxy."""

import re
import shlex
import urllib.parse

from novaimagebuilder import errors

#: Leading word of a lower-cased OS name -> OS family.
OS_FAMILIES = {
    "fedora": "redhat", "rhel": "redhat", "redhat": "redhat",
    "centos": "redhat", "rocky": "redhat", "rockylinux": "redhat",
    "alma": "redhat", "almalinux": "redhat", "ol": "redhat",
    "oraclelinux": "redhat",
    "debian": "debian", "ubuntu": "debian",
    "opensuse": "suse", "sles": "suse", "sle": "suse", "suse": "suse",
}


class UnsupportedOS(errors.BuildError, ValueError):
    """The guest's operating system is not one we know how to handle."""


def os_family(os_name):
    """"redhat", "debian" or "suse" for a TDL OS name, e.g. "RHEL-9"."""
    word = re.match(r"[a-z]*", os_name.strip().lower()).group()
    try:
        return OS_FAMILIES[word]
    except KeyError:
        raise UnsupportedOS(
            f"unknown operating system '{os_name}': customization knows "
            "Fedora, RHEL, CentOS, Rocky, Alma, OL (dnf/yum), Debian, "
            "Ubuntu (apt) and openSUSE/SLES (zypper)") from None


def repository_id(name):
    """A repository name made safe for file names and section ids."""
    return re.sub(r"[^A-Za-z0-9_-]", "-", name.strip()) or "repository"


class _PackageManager:
    """How one OS family handles repositories and packages."""

    cert_dir = "/etc/pki/imgfac-nova"
    _CERTS = (("cacert", "ca.pem", 0o644), ("clientcert", "client.pem", 0o644),
              ("clientkey", "client.key", 0o600))

    def certs(self, repo):
        """{attribute: (path, bytes, mode)} for the repository's certificates
        and client key (attribute: cacert, clientcert, clientkey)."""
        base = f"{self.cert_dir}/{repository_id(repo.name)}"
        return {attribute: (f"{base}/{name}", _pem(getattr(repo, attribute)),
                            mode)
                for attribute, name, mode in self._CERTS
                if getattr(repo, attribute, None)}

    def repo_files(self, repo):
        """Every file that makes ``repo`` available: [(path, bytes, mode)]."""
        raise NotImplementedError

    def repo_paths(self, repo):
        """What to delete to remove ``repo`` again (files or directories)."""
        paths = [path for path, _, _ in self.repo_files(repo)]
        if self.certs(repo):
            paths.append(f"{self.cert_dir}/{repository_id(repo.name)}")
        return paths

    def prepare(self):
        """Commands to run before installing: [(name, command)]."""
        return []

    def install(self, names, args=()):
        """The command installing ``names`` with extra ``args``."""
        raise NotImplementedError

    def refresh(self):
        """The command refreshing the package index after repo removal."""
        raise NotImplementedError

    #: The file holding the manager's proxy settings, and whether it is
    #: ours alone (removed at the end) or a system file edited in place
    #: (its original content written back at the end).
    proxy_file = None
    proxy_file_ours = False
    #: Other files whose original holds the settings, when proxy_file is
    #: absent (yum before dnf).
    proxy_fallbacks = ()

    def proxy_config(self, proxy, original):
        """The content of ``proxy_file`` with ``proxy`` set, from its
        ``original`` content (None: no such file)."""
        raise NotImplementedError


def _pem(text):
    return (text.strip() + "\n").encode("utf-8")


def quote_all(words):
    return " ".join(shlex.quote(word) for word in words)


class _Dnf(_PackageManager):
    """Fedora, RHEL and relatives: dnf, or yum where there is no dnf."""

    _PM = "$(command -v dnf >/dev/null 2>&1 && echo dnf || echo yum)"
    _CERT_OPTIONS = {"cacert": "sslcacert", "clientcert": "sslclientcert",
                     "clientkey": "sslclientkey"}

    def repo_files(self, repo):
        ident = repository_id(repo.name)
        certs = self.certs(repo)
        lines = [f"[{ident}]", f"name={repo.name}", f"baseurl={repo.url}",
                 "enabled=1", f"gpgcheck={int(bool(repo.signed))}",
                 f"sslverify={int(bool(repo.sslverify))}"]
        lines += [f"{self._CERT_OPTIONS[attribute]}={path}"
                  for attribute, (path, _, _) in certs.items()]
        text = "\n".join(lines) + "\n"
        return ([(f"/etc/yum.repos.d/{ident}.repo", text.encode(), 0o644)]
                + list(certs.values()))

    def install(self, names, args=()):
        return f"{self._PM} -y install {quote_all([*args, *names])}"

    def refresh(self):
        return f"{self._PM} clean all"

    proxy_file = "/etc/dnf/dnf.conf"
    proxy_fallbacks = ("/etc/yum.conf",)

    def proxy_config(self, proxy, original):
        """``proxy=`` in [main] (dnf and yum take one proxy for every
        repository: https_proxy when given, else http_proxy); dnf has no
        no_proxy option, so no_proxy is not applied."""
        lines = (original or "[main]\n").splitlines()
        lines = [line for line in lines
                 if not re.match(r"\s*proxy\s*=", line)]
        if "[main]" not in (line.strip() for line in lines):
            lines.insert(0, "[main]")
        at = [line.strip() for line in lines].index("[main]") + 1
        lines.insert(at, f"proxy={proxy.https or proxy.http}")
        return "\n".join(lines) + "\n"


class _Zypper(_PackageManager):
    """openSUSE and SLES (certificates are not supported)."""

    def repo_files(self, repo):
        ident = repository_id(repo.name)
        url = repo.url
        if url.startswith("https:") and not repo.sslverify:
            url += ("&" if "?" in url else "?") + "ssl_verify=no"
        text = (f"[{ident}]\nname={repo.name}\nbaseurl={url}\nenabled=1\n"
                f"autorefresh=1\ngpgcheck={int(bool(repo.signed))}\n")
        return [(f"/etc/zypp/repos.d/{ident}.repo", text.encode(), 0o644)]

    def certs(self, repo):
        return {}

    def install(self, names, args=()):
        return ("zypper --non-interactive install --auto-agree-with-licenses "
                + quote_all([*args, *names]))

    def refresh(self):
        return "zypper --non-interactive refresh"

    proxy_file = "/etc/sysconfig/proxy"
    _PROXY_KEYS = ("PROXY_ENABLED", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY")

    def proxy_config(self, proxy, original):
        """libzypp reads its proxies from /etc/sysconfig/proxy."""
        values = {"PROXY_ENABLED": "yes", "HTTP_PROXY": proxy.http or "",
                  "HTTPS_PROXY": proxy.https or proxy.http or "",
                  "NO_PROXY": ", ".join(proxy.no_proxy)}
        lines = [line for line in (original or "").splitlines()
                 if not re.match(r"\s*(%s)=" % "|".join(self._PROXY_KEYS),
                                 line)]
        lines += [f'{key}="{value}"' for key, value in values.items()]
        return "\n".join(lines) + "\n"


class _Apt(_PackageManager):
    """Debian and Ubuntu."""

    cert_dir = "/etc/apt/imgfac-nova"
    _ENV = "export DEBIAN_FRONTEND=noninteractive; "
    _SOURCE = re.compile(r"(deb(?:-src)?)\s+(?:\[([^\]]*)\]\s+)?(\S.*)")
    _CERT_OPTIONS = {"cacert": "CaInfo", "clientcert": "SslCert",
                     "clientkey": "SslKey"}

    def source_line(self, repo):
        """The sources.list line: the URL as given when it is an apt source
        line ("deb URL SUITE COMPONENTS"), else a flat repository at the
        URL ("deb URL ./"); unsigned repositories get [trusted=yes]."""
        text = " ".join(repo.url.strip().strip("'\"").split())
        match = self._SOURCE.fullmatch(text)
        kind, options, rest = (match.groups() if match
                               else ("deb", None, f"{text} ./"))
        options = options.split() if options else []
        if not repo.signed and not any(o.startswith("trusted=") for o in options):
            options.append("trusted=yes")
        bracket = f"[{' '.join(options)}] " if options else ""
        return f"{kind} {bracket}{rest}"

    def repo_files(self, repo):
        ident = repository_id(repo.name)
        files = [(f"/etc/apt/sources.list.d/{ident}.list",
                  (self.source_line(repo) + "\n").encode(), 0o644)]
        config = self._https_config(repo)
        if config:
            files.append((f"/etc/apt/apt.conf.d/90imgfac-nova-{ident}",
                          config.encode(), 0o644))
        return files + list(self.certs(repo).values())

    def _https_config(self, repo):
        """apt options for an https repository: verification, certificates."""
        url = re.search(r"https://\S+", repo.url)
        if not url:
            return ""
        prefix = f"Acquire::https::{urllib.parse.urlsplit(url.group()).hostname}::"
        lines = []
        if not repo.sslverify:
            lines += [f'{prefix}Verify-Peer "false";',
                      f'{prefix}Verify-Host "false";']
        lines += [f'{prefix}{self._CERT_OPTIONS[attribute]} "{path}";'
                  for attribute, (path, _, _) in self.certs(repo).items()]
        return "".join(line + "\n" for line in lines)

    def prepare(self):
        return [("update package index", self._ENV + "apt-get update")]

    def install(self, names, args=()):
        return (self._ENV + "apt-get install -y"
                " -o Dpkg::Options::=--force-confdef"
                " -o Dpkg::Options::=--force-confold "
                + quote_all([*args, *names]))

    def refresh(self):
        return self._ENV + "apt-get update"

    proxy_file = "/etc/apt/apt.conf.d/90imgfac-nova-proxy"
    proxy_file_ours = True

    def proxy_config(self, proxy, original=None):
        """Acquire::http(s)::Proxy, and DIRECT for each no_proxy host."""
        lines = []
        for scheme, url in (("http", proxy.http), ("https", proxy.https)):
            if url:
                lines.append(f'Acquire::{scheme}::Proxy "{url}";')
                lines += [f'Acquire::{scheme}::Proxy::{host} "DIRECT";'
                          for host in proxy.no_proxy
                          if re.fullmatch(r"[A-Za-z0-9.-]+", host)]
        return "".join(line + "\n" for line in lines)


PACKAGE_MANAGERS = {"redhat": _Dnf, "debian": _Apt, "suse": _Zypper}
