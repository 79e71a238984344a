"""The ``imgfac-nova`` command line: its verbs, their flags and the build
parameters they take (``imgfac_nova.cli`` runs them)."""
import argparse

from imgfac_nova import cmdline


class _ParameterSource(argparse.Action):
    """Keeps --parameter, --file-parameter and --parameters in command-line order."""

    def __call__(self, parser, namespace, values, option_string=None):
        kind = {"--parameter": "value", "--file-parameter": "file",
                "--parameters": "json"}[option_string]
        sources = getattr(namespace, "parameter_sources", None) or []
        values = values if isinstance(values, list) else [values]
        sources.append((kind, *values))
        namespace.parameter_sources = sources


def _add_parameters(parser):
    group = parser.add_argument_group("build parameters")
    group.add_argument("--parameter", nargs=2, metavar=("KEY", "VALUE"),
                       action=_ParameterSource, dest="parameter_sources",
                       help="a parameter for the plugins (repeatable)")
    group.add_argument("--file-parameter", nargs=2, metavar=("KEY", "FILE"),
                       action=_ParameterSource, dest="parameter_sources",
                       help="a parameter whose value is FILE's content "
                            "(repeatable)")
    group.add_argument("--parameters", metavar="FILE.json",
                       action=_ParameterSource, dest="parameter_sources",
                       help="a JSON object of parameters; later sources "
                            "override earlier ones")


def build_parser():
    parser = cmdline.parser(
        "imgfac-nova", "Build operating-system images inside an OpenStack "
        "cloud (or locally with QEMU), Image Factory style.")
    parser.add_argument("--output", choices=("text", "json"), default="text",
                        help="result format on stdout (default: text)")
    parser.add_argument("--verbose", action="store_true",
                        help="log progress details to stderr")
    verbs = parser.add_subparsers(dest="verb", metavar="VERB")
    verbs.required = True

    sub = verbs.add_parser("base_image", help="build a base image from a "
                           "template")
    sub.add_argument("template", help="TDL template file")
    _add_parameters(sub)

    sub = verbs.add_parser("target_image", help="make an image for a target "
                           "cloud or format")
    sub.add_argument("target", help="target name, e.g. openstack or qcow2")
    source = sub.add_mutually_exclusive_group(required=True)
    source.add_argument("--id", help="UUID of a COMPLETE base image")
    source.add_argument("--template", help="build the base image from this "
                        "template first")
    _add_parameters(sub)

    sub = verbs.add_parser("provider_image", help="push an image to a "
                           "provider")
    sub.add_argument("target", help="target name")
    sub.add_argument("provider", help="@CLOUD (a clouds.yaml entry), or a "
                     "provider definition (JSON, or a file holding it)")
    sub.add_argument("credentials", help="file holding the provider "
                     "credentials (read, never stored), or - for none")
    source = sub.add_mutually_exclusive_group(required=True)
    source.add_argument("--id", help="UUID of a target image (or of a base "
                        "image to make the target image from)")
    source.add_argument("--template", help="build from this template")
    sub.add_argument("--snapshot", action="store_true",
                     help="build on the provider and snapshot it there "
                          "(needs --template)")
    _add_parameters(sub)

    sub = verbs.add_parser("images", help="list images, optionally matching "
                           "a JSON query such as '{\"status\": \"COMPLETE\"}'")
    sub.add_argument("query", nargs="?", default="{}",
                     help="JSON object of field values to match")

    sub = verbs.add_parser("delete", help="delete an image")
    sub.add_argument("id", help="image UUID")
    sub.add_argument("--provider", help="provider, for provider images")
    sub.add_argument("--credentials", metavar="FILE",
                     help="provider credentials file, for provider images "
                          "pushed with a provider definition")
    sub.add_argument("--target", help="target, for provider images")
    _add_parameters(sub)

    sub = verbs.add_parser("plugins", help="list the installed plugins")
    sub.add_argument("--id", help="show only this plugin")

    sub = verbs.add_parser("sweep", help="remove what crashed builds left "
                           "behind (cloud resources, VMs, work directories)")
    sub.add_argument("--dry-run", action="store_true",
                     help="only list what would be removed")
    sub.add_argument("--jeos", action="store_true",
                     help="remove every JEOS cache entry too")
    _add_parameters(sub)

    sub = verbs.add_parser("resume", help="go on with a build (base "
                           "image, target image or push) whose process "
                           "died, after its last finished step, or give it "
                           "up (--abandon)")
    sub.add_argument("id", help="image UUID")
    sub.add_argument("--abandon", action="store_true",
                     help="do not resume: mark the build FAILED and remove "
                          "what it made (as sweep does)")
    sub.add_argument("--template", metavar="FILE",
                     help="the build's template again, when it holds "
                          "secrets (never stored) the build still needs")
    sub.add_argument("--credentials", metavar="FILE",
                     help="the provider credentials file again, for a push "
                          "that was given one (never stored)")
    _add_parameters(sub)

    sub = verbs.add_parser("jeos", help="list the JEOS cache (installed "
                           "systems builds reuse), or remove entries")
    sub.add_argument("--remove", nargs="+", metavar="ID",
                     help="remove these entries (Glance image ids or file "
                          "paths as listed, or keys)")
    _add_parameters(sub)

    sub = verbs.add_parser("validate", help="check templates without "
                           "building")
    sub.add_argument("templates", nargs="+", metavar="TEMPLATE")
    sub.add_argument("--install-script", action="store_true",
                     help="print the install script a build of TEMPLATE "
                          "would use (its kind on stderr; passwords only as "
                          "hashes)")
    _add_parameters(sub)
    return parser
