"""Start, stop and inspect the test cloud's daemons through pid files.

Every daemon runs in its own session (so stopping it takes its children
too), writes stdout/stderr to $DIR/log/NAME.log and is remembered by
$DIR/run/NAME.pid. A pid file is trusted only if that process is alive and
its command line still names the daemon's marker (a path under the state
directory), so stale pid files left by a reboot or a crash are ignored.
"""
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request


class ServiceError(RuntimeError):
    """A daemon did not start or did not become ready."""


class Daemon:
    """One long-running process of the test cloud."""

    def __init__(self, layout, name, argv, marker, env=None, port=None,
                 socket_path=None, http=False, configs=(), replaces=()):
        self.layout = layout
        self.name = name
        self.argv = argv
        self.marker = marker
        self.env = env or {}
        self.port = port
        self.socket_path = socket_path
        self.http = http
        self.configs = tuple(configs)
        #: Markers of what ran as this daemon before: stopped by start().
        self.replaces = tuple(replaces)

    @property
    def pidfile(self):
        return self.layout.pidfile(self.name)

    @property
    def logfile(self):
        return self.layout.logfile(self.name)

    @property
    def address(self):
        if self.port:
            return "127.0.0.1:%d" % self.port
        return self.socket_path or "-"

    def pid(self):
        """The pid of the running daemon, or None.

        The pid file is trusted only if it names a live process whose
        command line holds the marker. Otherwise (stale or lost pid file)
        the daemon is looked for among the session leaders, as started by
        `start`, and the pid file rewritten.
        """
        try:
            with open(self.pidfile) as f:
                pid = int(f.read().strip())
        except (OSError, ValueError):
            pid = None
        if pid and self.marker in _cmdline(pid) and not _is_zombie(pid):
            return pid
        found = self.find_all()
        if found:
            with open(self.pidfile, "w") as f:
                f.write("%d\n" % found[0])
            return found[0]
        if os.path.exists(self.pidfile):
            os.unlink(self.pidfile)
        return None

    def find_all(self, marker=None):
        """Live session leaders whose command line holds the marker."""
        marker = marker or self.marker
        found = []
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                pid = int(entry)
                if (marker in _cmdline(pid) and _session(pid) == pid
                        and not _is_zombie(pid)):
                    found.append(pid)
        return sorted(found)

    def started_at(self):
        """Wall-clock time the running daemon was started (pid file mtime)."""
        return os.stat(self.pidfile).st_mtime

    def start(self):
        """Spawn the daemon unless it runs already; return True if spawned."""
        if self.pid():
            return False
        for marker in self.replaces:
            _stop_all(self.find_all(marker))
        env = dict(os.environ)
        env.update(self.env)
        with open(self.logfile, "ab") as log:
            log.write(b"\n=== %s starting %s\n" % (
                self.name.encode(), time.strftime("%F %T").encode()))
            log.flush()
            proc = subprocess.Popen(
                self.argv, env=env, cwd=self.layout.root,
                stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                start_new_session=True)
        # Until the child has exec'd, its command line is still ours.
        deadline = time.monotonic() + 10
        while (self.marker not in _cmdline(proc.pid)
               and proc.poll() is None and time.monotonic() < deadline):
            time.sleep(0.01)
        with open(self.pidfile, "w") as f:
            f.write("%d\n" % proc.pid)
        return True

    def stop(self, timeout=20):
        """Terminate the daemon (every copy) with its process group; True if
        one ran."""
        pids = set(self.find_all())
        for marker in self.replaces:
            pids.update(self.find_all(marker))
        pid = self.pid()
        if pid:
            pids.add(pid)
        _stop_all(pids, timeout)
        if os.path.exists(self.pidfile):
            os.unlink(self.pidfile)
        return bool(pids)

    def answering(self):
        """True if the daemon's endpoint answers (or it has none)."""
        if self.http:
            return _http_answers(self.port)
        if self.port:
            return _connects((socket.AF_INET, ("127.0.0.1", self.port)))
        if self.socket_path:
            return _connects((socket.AF_UNIX, self.socket_path))
        return True

    def wait_ready(self, timeout):
        """Wait until the daemon answers; raise ServiceError with its log tail."""
        deadline = time.monotonic() + timeout
        while True:
            if not self.pid():
                raise ServiceError("%s exited during start-up; end of %s:\n%s"
                                   % (self.name, self.logfile, self.log_tail()))
            if self.answering():
                return
            if time.monotonic() > deadline:
                raise ServiceError("%s not ready after %d s; end of %s:\n%s"
                                   % (self.name, timeout, self.logfile,
                                      self.log_tail()))
            time.sleep(0.3)

    def log_tail(self, lines=25):
        try:
            with open(self.logfile, "rb") as f:
                f.seek(0, os.SEEK_END)
                f.seek(max(0, f.tell() - 8192))
                text = f.read().decode(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])


def _stop_all(pids, timeout=20):
    """SIGTERM the process groups of ``pids``, SIGKILL what is left."""
    for pid in pids:
        _signal_group(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(map(_alive, pids)):
        time.sleep(0.2)
    for pid in pids:
        _signal_group(pid, signal.SIGKILL)


def _cmdline(pid):
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _session(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            return int(f.read().rsplit(")", 1)[1].split()[3])
    except (OSError, IndexError, ValueError):
        return None


def _alive(pid):
    return os.path.exists("/proc/%d" % pid) and not _is_zombie(pid)


def _is_zombie(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return True


def _signal_group(pid, sig):
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        pass
    except PermissionError:
        os.kill(pid, sig)


def _connects(target):
    family, address = target
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.settimeout(1)
        try:
            s.connect(address)
            return True
        except OSError:
            return False


def _http_answers(port):
    try:
        urllib.request.urlopen("http://127.0.0.1:%d/" % port, timeout=5)
        return True
    except urllib.error.HTTPError:
        return True
    except (OSError, ValueError):
        return False


def rss_kib(pid):
    """Resident memory of a process and all its descendants, in KiB."""
    children = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open("/proc/%s/stat" % entry) as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        todo.extend(children.get(p, ()))
        try:
            with open("/proc/%d/status" % p) as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
        except OSError:
            pass
    return total
