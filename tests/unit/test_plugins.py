import pytest

from imgfac_nova.plugins import manager


@pytest.fixture
def plugins(plugin_site, monkeypatch):
    monkeypatch.delenv("OS_CLOUD", raising=False)
    monkeypatch.delenv("OS_AUTH_URL", raising=False)
    return manager.PluginManager()


def test_loads_declared_plugins_and_reports_broken(plugins):
    assert {"testos", "anyfedora", "fedora40", "fedora40b"} <= set(
        plugins.os_plugins)
    assert set(plugins.cloud_plugins) >= {"filecloud"}
    assert "is not a OSPlugin" in plugins.broken["notaplugin"]
    assert "cannot load" in plugins.broken["missing"]
    with pytest.raises(manager.PluginError, match="cannot load"):
        plugins.get("missing")


def test_most_specific_match_first(plugins):
    assert plugins.os_matches("Fedora", "39", "x86_64") == [
        (1, "anyfedora"), (0, "libvirt"), (0, "local"), (0, "nova")]
    assert plugins.choose_os_plugin("Fedora", "39", "x86_64") == "anyfedora"
    assert plugins.choose_os_plugin("RHEL", "9", "x86_64") == "fedora40"
    assert plugins.os_matches("FEDORA", "40", "x86_64")[:2] == [
        (3, "fedora40"), (3, "fedora40b")]


def test_tie_is_an_error_naming_the_way_out(plugins):
    with pytest.raises(manager.PluginError) as exc:
        plugins.choose_os_plugin("Fedora", "40", "x86_64")
    assert str(exc.value) == (
        "OS plugins fedora40, fedora40b all build Fedora 40 x86_64; choose one "
        "with --parameter os_plugin NAME or the os_plugin configuration option")


def test_requested_and_preferred(plugins):
    assert plugins.choose_os_plugin("Fedora", "40", "x86_64",
                                    requested="fedora40b") == "fedora40b"
    assert plugins.choose_os_plugin("Fedora", "40", "x86_64",
                                    preferred="fedora40") == "fedora40"
    # A less specific plugin may be requested, but not one that does not match.
    assert plugins.choose_os_plugin("Fedora", "40", "x86_64",
                                    requested="anyfedora") == "anyfedora"
    with pytest.raises(manager.PluginError,
                       match="OS plugin testos does not build Fedora 40"):
        plugins.choose_os_plugin("Fedora", "40", "x86_64", requested="testos")
    with pytest.raises(manager.PluginError, match="no plugin named 'nosuch'"):
        plugins.choose_os_plugin("Fedora", "40", "x86_64", requested="nosuch")
    # A preference that does not build this OS is ignored.
    assert plugins.choose_os_plugin("TestOS", "1", "x86_64",
                                    preferred="fedora40") == "testos"


def test_generic_plugins_match_anything_least_specifically(plugins,
                                                           monkeypatch):
    assert plugins.os_matches("Plan9", "4", "mips") == [
        (0, "libvirt"), (0, "local"), (0, "nova")]
    # libvirt, which needs a daemon, is never the default.
    assert plugins.choose_os_plugin("Plan9", "4", "mips") == "local"
    monkeypatch.setenv("OS_CLOUD", "mycloud")
    assert plugins.choose_os_plugin("Plan9", "4", "mips") == "nova"
    assert plugins.choose_os_plugin("Plan9", "4", "mips",
                                    preferred="local") == "local"
    assert plugins.choose_os_plugin("Plan9", "4", "mips",
                                    preferred="libvirt") == "libvirt"


def test_preferred_plugin_breaks_a_tie(plugins, monkeypatch):
    from tests.plugins import testos
    monkeypatch.setattr(testos.Fedora40Again, "preferred",
                        classmethod(lambda cls, conf: True))
    assert plugins.choose_os_plugin("Fedora", "40", "x86_64") == "fedora40b"
    monkeypatch.setattr(testos.Fedora40, "preferred",
                        classmethod(lambda cls, conf: True))
    with pytest.raises(manager.PluginError, match="all build"):
        plugins.choose_os_plugin("Fedora", "40", "x86_64")


def test_local_is_default_only_without_cloud(plugins, monkeypatch):
    local, nova = plugins.os_plugins["local"], plugins.os_plugins["nova"]
    assert local.preferred(None) and not nova.preferred(None)
    assert not plugins.os_plugins["libvirt"].preferred(None)
    monkeypatch.setenv("OS_AUTH_URL", "http://127.0.0.1:5000/v3")
    assert nova.preferred(None) and not local.preferred(None)


def test_no_match(plugins):
    for name in ("libvirt", "local", "nova"):
        del plugins.os_plugins[name]
    with pytest.raises(manager.PluginError,
                       match="no OS plugin builds Windows 11 x86_64"):
        plugins.choose_os_plugin("Windows", "11", "x86_64")


def test_cloud_plugins_by_target_name(plugins):
    assert plugins.choose_cloud_plugin("FileCopy") == "filecloud"
    with pytest.raises(manager.PluginError,
                       match="no cloud plugin makes 'ec2' images .*filecopy"):
        plugins.choose_cloud_plugin("ec2")
    with pytest.raises(manager.PluginError, match="does not make ec2"):
        plugins.choose_cloud_plugin("ec2", requested="filecloud")


def test_info_round_trip(plugins):
    info = plugins.os_plugins["fedora40"].info.to_dict()
    assert info["targets"] == [["Fedora", "40", "x86_64"], ["RHEL", None, None]]
    assert info["type"] == "os"
