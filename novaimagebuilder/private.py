"""Files only their owner reads: the media cache (media behind credentials),
the JEOS cache (installed systems, password hashes included) and build logs.

Directories are 0700 and files 0600, also when they existed before with
wider modes: they are tightened whenever they are opened.
"""
import os
import stat

from novaimagebuilder import errors

DIRECTORY_MODE = 0o700
FILE_MODE = 0o600


def _tighten(path, mode):
    try:
        if stat.S_IMODE(os.lstat(path).st_mode) != mode:
            os.chmod(path, mode)
    except FileNotFoundError:
        pass  # removed meanwhile (a finished download's partial file)
    except OSError as exc:
        raise errors.BuildError("cannot make %s private (mode %o): %s"
                                % (path, mode, exc.strerror)) from None


def directory(path):
    """Make ``path`` (with its parents) when missing; the directory 0700
    and the regular files in it 0600, whatever they were."""
    try:
        os.makedirs(path, mode=DIRECTORY_MODE, exist_ok=True)
    except OSError as exc:
        raise errors.BuildError("cannot make the directory %s: %s"
                                % (path, exc.strerror)) from None
    _tighten(path, DIRECTORY_MODE)
    with os.scandir(path) as entries:
        for entry in entries:
            if entry.is_file(follow_symlinks=False):
                _tighten(entry.path, FILE_MODE)
    return path


def file(path):
    """Create ``path`` empty when missing; 0600 either way."""
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, FILE_MODE))
    _tighten(path, FILE_MODE)
    return path
