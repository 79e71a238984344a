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

import secrets
import shlex

from novaimagebuilder import errors
from novaimagebuilder.guest import package_managers


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
        self.family = package_managers.os_family(template.os.name)
        self.manager = package_managers.PACKAGE_MANAGERS[self.family]()
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
        self.run("rm -rf " + package_managers.quote_all(paths), "remove repositories")
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
    package_managers.UnsupportedOS (or BuildError for unusable package
    arguments) before touching the guest, ssh_errors.CommandFailed when a
    step fails.
    """
    _Customizer(guest, template, log, progress, cancelled, proxy).all()
