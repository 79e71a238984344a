"""Apply a TDL template's customization inside a booted guest.

The order is Image Factory's (Oz's): repositories, precommands, packages,
files, commands, then the repositories not marked persisted are removed
again. With a proxy (proxy.Proxy) the package manager is set to use it
first (apt: an apt.conf.d file; dnf/yum: ``proxy=`` in the main
configuration; zypper: /etc/sysconfig/proxy) and, unless it persists, set
back at the end, so the image keeps no trace of it. Everything runs
privileged through the guest object, which needs only ``run(command,
privileged=, check=, timeout=, name=, merge_stderr=)`` and ``put(data,
path, mode, privileged=)`` (``ssh.SSHGuest`` has them).

The template is duck-typed: ``os.name``, ``repositories`` (``name url
signed persisted sslverify cacert clientcert clientkey``), ``packages``
(``name args``), ``files`` and ``precommands``/``commands`` (``name type
content data``, commands with ``position``). A package's ``repository``
and ``file`` are not used: every listed repository is enabled, and
packages are installed by name (with their ``arguments``).
"""

import re
import secrets
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


# ---------------------------------------------------------------- package managers

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


def _quote_all(words):
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
        return f"{self._PM} -y install {_quote_all([*args, *names])}"

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
                + _quote_all([*args, *names]))

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
                + _quote_all([*args, *names]))

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


# ---------------------------------------------------------------- fetching

def fetch_command(url, path):
    """Shell text downloading ``url`` to ``path`` inside the guest with
    curl, wget or python3, whichever is there (via a part file). On
    failure the shell exits with the downloader's status."""
    u, part = shlex.quote(url), shlex.quote(f"{path}.imgfac-part")
    python = shlex.quote(
        "import shutil, sys, urllib.request; shutil.copyfileobj("
        "urllib.request.urlopen(sys.argv[1], timeout=60), "
        "open(sys.argv[2], 'wb'))")
    have = "command -v {} >/dev/null 2>&1".format
    download = (
        f"if {have('curl')}; then curl -fsSL --retry 3 -o {part} {u}; "
        f"elif {have('wget')}; then wget -q -O {part} {u}; "
        f"elif {have('python3')}; then python3 -c {python} {u} {part}; "
        "else echo 'no curl, wget or python3 in the guest to download with' >&2; "
        "false; fi")
    return (f"mkdir -p {shlex.quote(_dirname(path))} && {{ {download}; }} && "
            f"mv -f {part} {shlex.quote(path)} "
            f"|| {{ status=$?; rm -f {part}; exit $status; }}")


def _dirname(path):
    return path.rsplit("/", 1)[0] or "/"


# ---------------------------------------------------------------- customize

def _split_args(package):
    try:
        return shlex.split(package.args)
    except ValueError as exc:
        raise errors.BuildError(f"arguments of package '{package.name}' are "
                                f"not valid shell words: {exc}") from None


class _Customizer:
    def __init__(self, guest, template, log, progress, cancelled, proxy=None):
        self.guest = guest
        self.proxy = proxy
        self._proxy_original = None
        self.template = template
        self.log = log
        self.progress = progress or (lambda activity: None)
        self.cancelled = cancelled
        self.family = os_family(template.os.name)
        self.manager = PACKAGE_MANAGERS[self.family]()
        self.package_args = {p.name: _split_args(p) for p in template.packages
                             if getattr(p, "args", None)}

    def step(self, activity):
        """Check for cancellation, then report ``activity``."""
        if self.cancelled is not None and self.cancelled():
            raise errors.Cancelled()
        self.log.info("%s", activity)
        self.progress(activity)

    def run(self, command, name):
        return self.guest.run(command, privileged=True, check=True, name=name)

    def put_all(self, files):
        for path, data, mode in files:
            self.guest.put(data, path, mode, privileged=True)

    # -- steps

    def repositories(self):
        for repo in self.template.repositories:
            self.step(f"Adding repository '{repo.name}'")
            self.put_all(self.manager.repo_files(repo))

    def commands(self, commands, kind):
        ordered = sorted(enumerate(commands), key=lambda item: (
            item[1].position if getattr(item[1], "position", None) is not None
            else item[0]))
        for _, command in ordered:
            self.step(f"Running {kind} '{command.name}'")
            self.run_content(command)

    def run_content(self, command):
        if command.type == "url":
            script = f"/tmp/.imgfac-{secrets.token_hex(8)}"
            self.run(fetch_command(command.content, script)
                     + f" && chmod 0700 {script} && "
                     f"{{ if head -c 2 {script} | grep -q '^#!'; then {script}; "
                     f"else sh {script}; fi; status=$?; rm -f {script}; "
                     "exit $status; }", command.name)
            return
        text = command.data.decode("utf-8", errors="replace")
        if text.startswith("#!") or len(text) > 16384:
            script = f"/tmp/.imgfac-{secrets.token_hex(8)}"
            self.guest.put(command.data, script, 0o700, privileged=True)
            runner = script if text.startswith("#!") else f"sh {script}"
            self.run(f"{runner}; status=$?; rm -f {script}; exit $status",
                     command.name)
        else:
            self.run(text, command.name)

    def packages(self):
        packages = self.template.packages
        if not packages:
            return
        count = len(packages)
        self.step(f"Installing {count} package{'s' if count != 1 else ''}")
        for name, command in self.manager.prepare():
            self.run(command, name)
        plain = [p.name for p in packages if p.name not in self.package_args]
        if plain:
            self.run(self.manager.install(plain), "install packages")
        for name, args in self.package_args.items():
            self.run(self.manager.install([name], args),
                     f"install package {name}")

    def files(self):
        for item in self.template.files:
            self.step(f"Writing file {item.name}")
            if item.type == "url":
                self.run(fetch_command(item.content, item.name)
                         + f" && chmod 0644 {shlex.quote(item.name)}",
                         f"download {item.name}")
            else:
                self.guest.put(item.data, item.name, 0o644, privileged=True)

    def remove_repositories(self):
        temporary = [r for r in self.template.repositories if not r.persisted]
        if not temporary:
            return
        names = ", ".join(f"'{r.name}'" for r in temporary)
        self.step(f"Removing repositories not persisted: {names}")
        paths = [path for repo in temporary
                 for path in self.manager.repo_paths(repo)]
        self.run("rm -rf " + _quote_all(paths), "remove repositories")
        self.run(self.manager.refresh(), "refresh package index")

    def set_proxy(self):
        """Point the package manager at the proxy; remember what to undo."""
        manager = self.manager
        path = manager.proxy_file
        original = None
        if not manager.proxy_file_ours:
            for candidate in (path, *manager.proxy_fallbacks):
                status, text = self.guest.run(
                    f"cat {shlex.quote(candidate)}", check=False,
                    name=f"read {candidate}", merge_stderr=False)
                if status == 0:
                    path, original = candidate, text
                    break
        self.step(f"Setting the package manager's proxy ({path})")
        if self.family == "redhat" and self.proxy.no_proxy:
            self.log.warning("no_proxy does not apply to dnf/yum: they have "
                             "no such setting")
        self._proxy_original = (path, original)
        self.guest.put(manager.proxy_config(self.proxy, original).encode(),
                       path, 0o644, privileged=True)

    def remove_proxy(self):
        """Take the proxy settings out of the image again."""
        path, original = self._proxy_original
        self.step(f"Removing the package manager's proxy ({path})")
        if original is None:
            self.run(f"rm -f {shlex.quote(path)}", "remove proxy settings")
        else:
            self.guest.put(original.encode(), path, 0o644, privileged=True)

    def all(self):
        if self.proxy is not None:
            self.set_proxy()
        self.repositories()
        self.commands(self.template.precommands, "precommand")
        self.packages()
        self.files()
        self.commands(self.template.commands, "command")
        self.remove_repositories()
        if self.proxy is not None and not self.proxy.persist:
            self.remove_proxy()


def customize(guest, template, log, progress=None, cancelled=None,
              proxy=None):
    """Apply ``template``'s repositories, packages, files and commands.

    ``log`` is a logger for step messages; ``progress(activity)`` is called
    with a one-line description before each step; ``cancelled()`` is
    checked between steps (true -> errors.Cancelled; it may also raise its
    own exception). ``proxy`` (a proxy.Proxy) is set for the package
    manager first and removed at the end unless it persists. Raises
    UnsupportedOS (or BuildError for unusable package arguments) before
    touching the guest, ssh.CommandFailed when a step fails.
    """
    _Customizer(guest, template, log, progress, cancelled, proxy).all()
