"""Passwords of the test cloud: generated once, kept in $DIR/secrets.json (0600)."""
import json
import os
import secrets

NAMES = ("admin", "user", "database", "rabbitmq",
         "glance", "placement", "nova", "neutron", "cinder")


def load(layout):
    """Return the password table, creating missing entries."""
    table = {}
    if os.path.exists(layout.secrets):
        with open(layout.secrets) as f:
            table = json.load(f)
    missing = [n for n in NAMES if n not in table]
    if missing:
        for name in missing:
            table[name] = secrets.token_hex(16)
        fd = os.open(layout.secrets + ".tmp",
                     os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(table, f, indent=1)
        os.replace(layout.secrets + ".tmp", layout.secrets)
    return table
