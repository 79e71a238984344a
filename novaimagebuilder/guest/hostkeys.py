"""SSH host keys the build makes for its guest, handed over in user data.

A guest that runs cloud-init prints its host keys on the console only
after its SSH server answers, so the console cannot vouch for the first
key offered. Instead the build makes the guest's host key itself
(:func:`generate`, Ed25519) and gives it in the customization server's user
data as cloud-init's ``ssh_keys`` (:func:`user_data`); the SSH check is
then strict against that key without waiting for the console.

``ssh_host_keys`` (:data:`SOURCES`) says which keys the build expects:
"build" only its own (another key fails the build), "console" only those the
console shows (nothing in the user data), "auto" its own first, else the
console's. The private key is a secret: it lives in memory and in the user
data only; ``repr()`` never shows it.
"""
import base64
import email.mime.multipart
import email.mime.text
import hashlib

import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

#: Which host keys the build expects (the ``ssh_host_keys`` parameter).
SOURCES = ("auto", "build", "console")

#: What a user data part starts with, and its MIME type for cloud-init.
_PART_TYPES = (("#cloud-config", "cloud-config"), ("#!", "x-shellscript"),
               ("#include", "x-include-url"),
               ("#cloud-boothook", "cloud-boothook"),
               ("#part-handler", "part-handler"))


class HostKey:
    """An Ed25519 host key: ``private`` (OpenSSH PEM text, secret),
    ``public`` ("ssh-ed25519 BASE64") and its ``fingerprint``."""

    kind = "ed25519"

    def __init__(self, private, public):
        self.private = private
        self.public = public

    @property
    def fingerprint(self):
        return line_fingerprint(self.public)

    def __repr__(self):
        return f"<HostKey {self.kind} {self.fingerprint}>"


def blob_fingerprint(blob):
    """OpenSSH's SHA256 fingerprint of a public key blob: "SHA256:..."."""
    digest = base64.b64encode(hashlib.sha256(blob).digest())
    return "SHA256:" + digest.decode("ascii").rstrip("=")


def line_fingerprint(line):
    """The SHA256 fingerprint of a "TYPE BASE64 [comment]" key line."""
    return blob_fingerprint(base64.b64decode(line.split()[1]))


def generate():
    """A new Ed25519 host key (:class:`HostKey`)."""
    key = ed25519.Ed25519PrivateKey.generate()
    private = key.private_bytes(serialization.Encoding.PEM,
                                serialization.PrivateFormat.OpenSSH,
                                serialization.NoEncryption()).decode("ascii")
    public = key.public_key().public_bytes(
        serialization.Encoding.OpenSSH,
        serialization.PublicFormat.OpenSSH).decode("ascii")
    return HostKey(private, public)


def ssh_keys(keys):
    """cloud-init's ``ssh_keys`` mapping of ``keys`` (written as they are:
    the public key file gets its final newline here)."""
    found = {}
    for key in keys:
        found[f"{key.kind}_private"] = key.private
        found[f"{key.kind}_public"] = key.public + "\n"
    return found


def user_data(keys, given=None):
    """User data that gives the guest ``keys`` as its SSH host keys, with
    ``given`` user data (text) kept: a ``#cloud-config`` gets ``ssh_keys``
    added, a MIME multipart gets a cloud-config part more, anything else
    becomes a part beside it. ValueError (one line) when ``given`` already
    sets a host key of the same type."""
    wanted = ssh_keys(keys)
    given = given or ""
    if not given.strip():
        return _cloud_config({"ssh_keys": wanted})
    if given.startswith("#cloud-config"):
        try:
            config = yaml.safe_load(given)
        except yaml.YAMLError as exc:
            raise ValueError("the user data is #cloud-config but not YAML: "
                             + " ".join(str(exc).split())) from None
        if not isinstance(config, dict):
            raise ValueError("the user data is #cloud-config but not a "
                             "mapping")
        present = config.get("ssh_keys") or {}
        clash = sorted(set(present) & set(wanted))
        if clash:
            raise ValueError("the user data already sets the SSH host key "
                             f"{clash[0]}; give ssh_host_keys console to "
                             "keep it")
        config["ssh_keys"] = dict(present, **wanted)
        return _cloud_config(config)
    ours = _part(_cloud_config({"ssh_keys": wanted}), "cloud-config")
    if given.lstrip().lower().startswith(("content-type:", "mime-version:")):
        message = email.message_from_string(given)
        if not message.is_multipart():
            raise ValueError("the user data is MIME but not multipart")
        message.attach(ours)
        return message.as_string()
    kind = next((t for start, t in _PART_TYPES if given.startswith(start)),
                "plain")
    message = email.mime.multipart.MIMEMultipart()
    message.attach(_part(given, kind))
    message.attach(ours)
    return message.as_string()


def _cloud_config(config):
    return "#cloud-config\n" + yaml.safe_dump(config, default_flow_style=False,
                                              sort_keys=False)


def _part(text, subtype):
    return email.mime.text.MIMEText(text, subtype, "utf-8")


__all__ = ["SOURCES", "HostKey", "generate", "ssh_keys", "user_data",
           "blob_fingerprint", "line_fingerprint"]
