"""Build parameters: where they come from, what plugins accept, how they are typed.

Sources, applied in command-line order so later ones override earlier ones:
``--parameter KEY VALUE``, ``--file-parameter KEY FILE`` (the file's content) and
``--parameters FILE.json`` (a JSON object). Plugins declare the parameters they
accept with :class:`Parameter`; values are cast to the declared type, unknown keys
are warned about (refused in strict mode), and secret values are redacted wherever
they are stored or logged; credentials in URLs are scrubbed from every value kept.
"""
import dataclasses
import json
import logging

from novaimagebuilder import scrub

LOG = logging.getLogger(__name__)

REDACTED = "***"
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


class ParameterError(ValueError):
    """A parameter is unusable; str() is one line."""


@dataclasses.dataclass(frozen=True)
class Parameter:
    """A parameter a plugin accepts."""

    name: str
    help: str
    type: str = "string"  # string, bool, int, float
    default: object = None
    secret: bool = False
    choices: tuple = ()
    minimum: float | None = None  # for int and float parameters
    #: How a record keeps a secret value: ``masked(value, hidden)``, with
    #: ``hidden`` the words the record must not show either (default ***).
    masked: object = None

    def cast(self, value, plugin):
        """``value`` converted to this parameter's type, or ParameterError."""
        where = "parameter %r of plugin %s" % (self.name, plugin)
        if self.type == "bool":
            if isinstance(value, bool):
                return value
            text = str(value).strip().lower()
            if text in _TRUE:
                return True
            if text in _FALSE:
                return False
            raise ParameterError("%s: expected true or false, got %r"
                                 % (where, _shown(self, value)))
        if self.type in ("int", "float"):
            convert = int if self.type == "int" else float
            if isinstance(value, bool):
                raise ParameterError("%s: expected a number, got %r"
                                     % (where, value))
            try:
                value = convert(str(value).strip())
            except ValueError:
                raise ParameterError(
                    "%s: expected %s, got %r"
                    % (where, "an integer" if self.type == "int" else "a number",
                       _shown(self, value))) from None
            if self.minimum is not None and value < self.minimum:
                raise ParameterError("%s: must be at least %s, got %s"
                                     % (where, self.minimum, value))
        elif not isinstance(value, str):
            value = json.dumps(value) if isinstance(value, (dict, list)) \
                else str(value)
        if self.choices and value not in self.choices:
            raise ParameterError("%s: %r is not one of %s" % (
                where, _shown(self, value), ", ".join(map(str, self.choices))))
        return value


def _shown(param, value):
    return REDACTED if param.secret else value


def collect(sources):
    """Merge parameter sources, in order, into one dict of raw values.

    ``sources`` holds tuples ``("value", key, text)``, ``("file", key, path)`` or
    ``("json", path)``.
    """
    values = {}
    for source in sources:
        kind = source[0]
        if kind == "value":
            values[source[1]] = source[2]
        elif kind == "file":
            values[source[1]] = _read(source[2], "--file-parameter %s" % source[1])
        elif kind == "json":
            values.update(_read_json(source[1]))
        else:
            raise ValueError("unknown parameter source %r" % kind)
    return values


def _read(path, what):
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read()
    except OSError as exc:
        raise ParameterError("%s: cannot read %s: %s"
                             % (what, path, exc.strerror)) from None
    except UnicodeDecodeError:
        raise ParameterError("%s: %s is not UTF-8 text" % (what, path)) from None


def _read_json(path):
    text = _read(path, "--parameters")
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise ParameterError("%s:%d: not valid JSON: %s"
                             % (path, exc.lineno, exc.msg)) from None
    if not isinstance(data, dict):
        raise ParameterError("%s: must hold a JSON object of parameter names "
                             "and values" % path)
    return data


def resolve(specs, values, plugin, common=(), strict=False):
    """Typed values for one plugin: declared defaults overlaid with ``values``.

    Keys that neither the plugin (``specs``) nor the front end (``common``) knows
    are kept as strings and warned about; ``strict``: refused (ParameterError).
    """
    declared = {p.name: p for p in specs}
    result = {p.name: p.default for p in specs if p.default is not None}
    for key, value in values.items():
        if key in declared:
            result[key] = declared[key].cast(value, plugin)
            continue
        if key not in common:
            known = ", ".join(sorted(declared)) or "none"
            if strict:
                raise ParameterError("unknown parameter %r of plugin %s "
                                     "(known: %s)" % (key, plugin, known))
            LOG.warning("Plugin %s does not know the parameter %r "
                        "(known: %s)", plugin, key, known)
        result[key] = value
    return result


def redact(specs, values, hidden=()):
    """A copy of ``values`` as a record keeps it: secret values replaced by
    ``***`` (or masked as their parameter says, ``hidden`` the words, such
    as the template's root password, a masked value must not show either),
    credentials scrubbed from the URLs in the others."""
    secret = {p.name: p for p in specs if p.secret}

    def kept(key, value):
        param = secret.get(key)
        if param is None:
            return scrub.scrub(value)
        if param.masked is not None and value is not None:
            return param.masked(value, hidden)
        return REDACTED
    return {k: kept(k, v) for k, v in values.items()}


def warn_exposed_secrets(specs, sources, plugin):
    """Warn about secret parameters given on the command line itself."""
    secret = {p.name for p in specs if p.secret}
    for source in sources:
        if source[0] == "value" and source[1] in secret:
            LOG.warning("The secret parameter %r of plugin %s was given with "
                        "--parameter, where other users can read it in the "
                        "process list; use --file-parameter or --parameters",
                        source[1], plugin)
