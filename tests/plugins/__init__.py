"""Plugins used only by the tests, registered through real entry points.

:func:`install` writes a ``.dist-info`` directory declaring them, so stevedore
finds them exactly as it finds a third party's installed plugin package.
"""
import os

ENTRY_POINTS = {
    "imgfac_nova.os_plugins": {
        "testos": "tests.plugins.testos:TestOS",
        "anyfedora": "tests.plugins.testos:AnyFedora",
        "fedora40": "tests.plugins.testos:Fedora40",
        "fedora40b": "tests.plugins.testos:Fedora40Again",
        "notaplugin": "tests.plugins.testos:NotAPlugin",
        "missing": "tests.plugins.no_such_module:Plugin",
    },
    "imgfac_nova.cloud_plugins": {
        "filecloud": "tests.plugins.filecloud:FileCloud",
    },
}


#: The directory declaring them in a site.
DIST = "imgfac_nova_test_plugins-1.0.dist-info"


def install(site_dir):
    """Declare the test plugins in ``site_dir``; returns the path to put on
    sys.path / PYTHONPATH (with the repository root, for ``tests.plugins``)."""
    dist = os.path.join(site_dir, DIST)
    os.makedirs(dist, exist_ok=True)
    with open(os.path.join(dist, "METADATA"), "w") as handle:
        handle.write("Metadata-Version: 2.1\nName: imgfac-nova-test-plugins\n"
                     "Version: 1.0\n")
    with open(os.path.join(dist, "entry_points.txt"), "w") as handle:
        for namespace, entries in ENTRY_POINTS.items():
            handle.write("[%s]\n" % namespace)
            for name, target in entries.items():
                handle.write("%s = %s\n" % (name, target))
    return site_dir
