"""What the ``imgfac-nova`` verbs share: reading the configuration,
template, parameters and credentials they are given, each mistake a
one-line UsageError, and the builder over the configured store."""
from imgfac_nova import cmdline


class UsageError(Exception):
    """Bad input: report it in one line and exit 2."""


def error(message, code):
    """Print ``message`` as imgfac-nova's error; returns ``code``."""
    return cmdline.error("imgfac-nova", message, code)


def conf(args):
    from oslo_config import cfg
    from imgfac_nova import config
    try:
        return config.load(args.config_file, debug=args.debug,
                           verbose=args.verbose)
    except cfg.Error as exc:
        raise UsageError(str(exc).strip().splitlines()[0]) from None


def image_store(conf):
    from imgfac_nova import config
    return config.image_store(conf)


def load_template(path, conf):
    from imgfac_nova import config
    from imgfac_nova import template
    from imgfac_nova.template_xml import TemplateError
    try:
        return template.load_template(path, config.template_limits(conf))
    except TemplateError as exc:
        raise UsageError(str(exc)) from None


def values(args):
    from imgfac_nova import parameters
    try:
        return parameters.collect(getattr(args, "parameter_sources", None)
                                  or [])
    except parameters.ParameterError as exc:
        raise UsageError(str(exc)) from None


def builder(conf, progress=None):
    from imgfac_nova import build
    return build.Builder(conf, image_store(conf), on_change=progress)


def _read_secret_file(path, what):
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError("cannot read %s %s: %s" % (
            what, path, getattr(exc, "strerror", None) or "not UTF-8 text")) \
            from None


def credentials(path):
    """The provider credentials in the file ``path``; None for ``-``."""
    if not path or path == "-":
        return None
    return _read_secret_file(path, "credentials file")
