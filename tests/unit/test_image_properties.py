"""Boot-ready Glance properties of the openstack target: derived from the
build, SCS-0102's mandatory ones with the values its checker accepts, the
operator's on top, and a contradiction refused in one line before any
record exists."""
import datetime

import pytest

from imgfac_nova import build
from imgfac_nova import images
from imgfac_nova import store
from imgfac_nova import template as tdl
from imgfac_nova.plugins import openstack
from novaimagebuilder import errors
from novaimagebuilder.images import image_properties as ip
from novaimagebuilder.machines import machine_model
from tests import scs_0102

TEMPLATE = """<template><name>rocky-uefi</name>
  <description>Rocky 9 for the research cloud</description>
  <os><name>Rocky</name><version>9.4</version><arch>x86_64</arch>
    <install type='url'><url>http://example.com/os/</url></install>
  </os></template>"""
ICICLE = '<icicle><packages>{agent}<package name="bash_5.2"/></packages>' \
    '</icicle>'
PARAMETERS = {"hw_disk_bus": "virtio", "hw_vif_model": "virtio"}
UEFI_SB = {"default_user": "rocky", "firmware": "uefi", "secure_boot": True,
           "memory": 2048}


def _base(**parameters):
    return images.ImageRecord(type=images.BASE_IMAGE, plugin="local",
                              status=images.COMPLETE, template=TEMPLATE,
                              parameters=parameters,
                              icicle=ICICLE.format(agent=""))


def test_uefi_secure_boot_build_has_boot_and_scs_0102_properties():
    built = datetime.datetime(2026, 11, 30, 5, 30, tzinfo=datetime.timezone.utc)
    template = tdl.parse_template(TEMPLATE, "t.tdl")
    props = openstack.glance_properties(
        template, ICICLE.format(agent='<package name="qemu-guest-agent_8"/>'),
        PARAMETERS, UEFI_SB, built=built)
    assert props == {
        "os_distro": "rocky", "os_version": "9.4", "os_type": "linux",
        "architecture": "x86_64", "hw_disk_bus": "virtio",
        "hw_vif_model": "virtio", "hw_firmware_type": "uefi",
        "hw_machine_type": "q35", "os_secure_boot": "required",
        "hw_qemu_guest_agent": "yes", "os_require_quiesce": "yes",
        "image_build_date": "2026-11-30 05:30",
        "image_original_user": "rocky", "image_source": "private",
        "image_description": "Rocky 9 for the research cloud",
        # SCS-0102's update policy: no promises until the operator makes any
        "replace_frequency": "never", "provided_until": "none",
        "uuid_validity": "none",
        # x86-64-v2, as Placement's traits of the host CPU
        "trait:HW_CPU_X86_SSE3": "required",
        "trait:HW_CPU_X86_SSSE3": "required",
        "trait:HW_CPU_X86_SSE41": "required",
        "trait:HW_CPU_X86_SSE42": "required",
        "imgfac_template": "rocky-uefi"}
    min_ram = openstack.min_ram({"min_ram": None}, _base(**UEFI_SB))
    assert min_ram == 2048
    assert scs_0102.offences(props, 2, min_ram, 2 * 1024 ** 3,
                             built.timestamp()) == []
    assert scs_0102.offences(dict(props, image_source="nowhere"), 0, 0) \
        == ["min_disk", "min_ram", "image_source"]


@pytest.mark.parametrize("change,offence", [
    ({"os_distro": "Debian"}, "os_distro"),
    ({"os_version": ""}, "os_version"),
    ({"architecture": "amd64"}, "architecture"),
    ({"hw_disk_bus": "ide"}, "hw_disk_bus"),
    ({"image_original_user": None}, "image_original_user"),
    ({"image_description": ""}, "image_description"),
    ({"image_source": "ftp:/x"}, "image_source"),
    ({"image_build_date": "2026-13-01"}, "image_build_date"),
    ({"image_build_date": "2099-01-01"}, "image_build_date"),
    ({"replace_frequency": "sometimes"}, "replace_frequency"),
    ({"replace_frequency": None}, "replace_frequency"),
    ({"provided_until": "forever"}, "provided_until"),
    ({"uuid_validity": None}, "uuid_validity"),
    ({"uuid_validity": "last-"}, "uuid_validity"),
    ({"hotfix_hours": "soon"}, "hotfix_hours"),
])
def test_scs_0102_check_finds_each_mandatory_property(change, offence):
    props = dict(ip.derived("Debian", "12", "x86_64", default_user="debian"),
                 **change)
    assert scs_0102.offences(props, 2, 1024) == [offence]


def test_operator_update_policy_meets_scs_0102():
    template = tdl.parse_template(TEMPLATE, "t.tdl")
    given = {"image_properties": '{"replace_frequency": "monthly", '
             '"provided_until": "2027-09-30", "uuid_validity": "last-3", '
             '"hotfix_hours": 48}'}
    props = openstack.glance_properties(template, None,
                                        dict(PARAMETERS, **given), UEFI_SB)
    assert scs_0102.offences(props, 2, 2048) == []
    assert props["hotfix_hours"] == "48"


def test_bios_build_has_no_firmware_properties_and_scsi_gets_its_model():
    props = ip.derived("Debian", "12", "amd64", hw_disk_bus="scsi")
    assert "hw_firmware_type" not in props and "os_secure_boot" not in props
    assert props["hw_scsi_model"] == "virtio-scsi"
    assert props["architecture"] == "x86_64"
    assert props["image_original_user"] == "none"  # no default user given
    assert openstack.min_ram({}, _base()) == openstack.DEFAULT_MIN_RAM


def test_cpu_traits_are_placements_and_only_above_v1():
    import os_traits
    v3 = machine_model.features(3, 2)
    assert set(v3) <= set(os_traits.get_traits("HW_CPU_X86_"))
    assert {"HW_CPU_X86_AVX2", "HW_CPU_X86_FMA3"} <= set(v3)
    debian = ip.derived("Debian", "12", "x86_64")
    assert not [key for key in debian if key.startswith("trait:")]


def test_operator_adds_and_overrides_properties():
    template = tdl.parse_template(TEMPLATE, "t.tdl")
    given = {"image_properties": '{"os_purpose": "generic", "image_source": '
             '"https://images.example.org/rocky/", "hw_rng_model": "virtio", '
             '"os_distro": "rocky-research", "hw_vif_multiqueue_enabled": '
             'true}'}
    props = openstack.glance_properties(template, None,
                                        dict(PARAMETERS, **given), UEFI_SB)
    assert props["os_purpose"] == "generic"
    assert props["image_source"] == "https://images.example.org/rocky/"
    assert props["os_distro"] == "rocky-research"
    assert props["hw_vif_multiqueue_enabled"] == "true"
    assert props["hw_firmware_type"] == "uefi"


@pytest.mark.parametrize("given,base,message", [
    ('{"hw_firmware_type": "bios"}', UEFI_SB,
     "image_properties: hw_firmware_type=bios contradicts the build's "
     "firmware uefi (the firmware parameter)"),
    ('{"hw_firmware_type": "uefi"}', {},
     "image_properties: hw_firmware_type=uefi contradicts the build's "
     "firmware bios (the firmware parameter)"),
    ('{"os_secure_boot": "required"}', {"firmware": "uefi"},
     "image_properties: os_secure_boot=required needs a build with "
     "secure_boot true"),
    ('{"hw_machine_type": "pc"}', UEFI_SB,
     "image_properties: hw_machine_type=pc contradicts Secure Boot, which "
     "needs a q35 machine"),
    ('{"architecture": "aarch64"}', {},
     "image_properties: architecture=aarch64 contradicts the template's "
     "arch x86_64"),
    ('{"image_source": "somewhere"}', {},
     "image_properties: image_source=somewhere must be a URL or 'private' "
     "(SCS-0102)"),
    ('{"image_build_date": "last week"}', {},
     "image_properties: image_build_date=last week must be YYYY-MM-DD or "
     "YYYY-MM-DD hh:mm[:ss] in UTC (SCS-0102)"),
    ('{"trait:HW_CPU_X86_SSE42": "forbidden"}', {},
     "image_properties: trait:HW_CPU_X86_SSE42=forbidden but the OS needs "
     "that CPU feature"),
    ('{"replace_frequency": "often"}', {},
     "image_properties: replace_frequency=often must be one of yearly, "
     "quarterly, monthly, weekly, daily, critical_bug, never (SCS-0102)"),
    ('{"provided_until": "2027"}', {},
     "image_properties: provided_until=2027 must be YYYY-MM-DD, none or "
     "notice (SCS-0102)"),
    ('{"uuid_validity": "last-n"}', {},
     "image_properties: uuid_validity=last-n must be YYYY-MM-DD, last-N, "
     "none, notice or forever (SCS-0102)"),
    ('{"hotfix_hours": "-1"}', {},
     "image_properties: hotfix_hours=-1 must be a number of hours "
     "(SCS-0102)"),
    ('{"min_ram": 64}', {},
     "image_properties: min_ram=64 is an image field: give the min_ram "
     "parameter"),
    ('{"imgfac_role": "media"}', {},
     "image_properties: imgfac_role=media is the build's own tag"),
    ('["hw_firmware_type"]', {},
     "image_properties must be a JSON object of property names and values"),
    ('{"a": ', {}, "image_properties is not JSON: "),
])
def test_contradiction_is_one_line(given, base, message):
    template = tdl.parse_template(TEMPLATE, "t.tdl")
    with pytest.raises(errors.BuildError) as exc:
        openstack.glance_properties(template, None, dict(
            PARAMETERS, image_properties=given), base)
    assert str(exc.value).startswith(message)
    assert "\n" not in str(exc.value)


def test_contradicting_target_is_refused_before_any_record(plugin_site, tmp_path):
    image_store = store.ImageStore(str(tmp_path / "store"))
    base = _base(**UEFI_SB)
    base.data = str(tmp_path / "base.qcow2")
    image_store.add(base)
    builder = build.Builder(None, image_store)
    with pytest.raises(errors.BuildError, match="^image_properties: "
                       "hw_firmware_type=bios contradicts"):
        builder.target_image("openstack", {
            "image_properties": '{"hw_firmware_type": "bios"}'},
            base_id=base.identifier)
    assert [r.identifier for r in image_store.list()] == [base.identifier]
