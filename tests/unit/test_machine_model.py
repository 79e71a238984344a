"""CPU baselines and firmware of local builds: the OS levels, the CPU model
this QEMU gives under TCG, the QEMU command line, and the one-line refusal
when no model can meet the OS."""
import json
import os
import stat
import subprocess
import sys
import textwrap

import pytest

from imgfac_nova import store
from imgfac_nova import template as tdl
from imgfac_nova.plugins import local as local_plugin
from novaimagebuilder import errors
from novaimagebuilder.machines import local
from novaimagebuilder.machines import machine_model
from novaimagebuilder.machines import qemu


@pytest.fixture(autouse=True)
def fresh_probe():
    machine_model.tcg_models.cache_clear()
    yield
    machine_model.tcg_models.cache_clear()


@pytest.mark.parametrize("name,version,level", [
    ("RHEL-9", "4", 2), ("RHEL", "9.4", 2), ("Rocky", "9", 2),
    ("AlmaLinux", "9.5", 2), ("OL", "9", 2), ("CentOS-Stream", "9", 2),
    ("RHEL", "10.0", 3), ("CentOS-Stream", "10", 3), ("AlmaLinux", "10", 3),
    ("RHEL-8", "10", 1), ("Rocky", "8.10", 1), ("Fedora", "42", 1),
    ("Debian", "12", 1), ("Ubuntu", "24.04", 1), ("SLES", "16", 2),
    ("TestOS", "1", 1),
])
def test_each_os_release_has_its_level(name, version, level):
    assert machine_model.level(name, version) == level


def _qemu_features(model):
    """The features QEMU's own expansion says ``model`` has under TCG."""
    return machine_model.tcg_models()[model]


def test_tcg_models_meet_the_levels_they_are_chosen_for():
    v2 = machine_model.cpu_model("tcg", 2)
    v3 = machine_model.cpu_model("tcg", 3)
    assert set(machine_model.features(2)) <= _qemu_features(v2)
    assert set(machine_model.features(3)) <= _qemu_features(v3)
    # The oldest model that has v2: not one with AVX.
    assert "avx" not in _qemu_features(v2)
    assert machine_model.cpu_model("tcg", 1) is None


def _template(name, version):
    return tdl.parse_template(textwrap.dedent(f"""\
        <template><name>t</name><os>
          <name>{name}</name><version>{version}</version><arch>x86_64</arch>
          <install type='url'><url>http://example.com/os/</url></install>
        </os></template>"""), "t.tdl")


def test_el9_template_gets_the_v2_model_on_the_qemu_command_line(tmp_path):
    machine = local_plugin._machine(_template("RHEL-9", "4"),
                                    {"firmware": "bios"}, "tcg")
    backend = local.LocalBackend(str(tmp_path), "tcg", machine=machine)
    vm = backend._vm("installer", str(tmp_path / "disk.qcow2"))
    try:
        argv = vm._argv
        model = argv[argv.index("-cpu") + 1]
        assert model == machine_model.cpu_model("tcg", 2)
        assert set(machine_model.features(2)) <= _qemu_features(model)
        assert argv[argv.index("-machine") + 1] == "pc"
        assert "if=pflash" not in " ".join(argv)
        assert backend.jeos_scope()["cpu"] == model
    finally:
        vm.kill()


def test_kvm_gives_host_when_the_host_has_the_level(monkeypatch):
    monkeypatch.setattr(machine_model, "_host_flags", lambda: set(
        machine_model.features(3, 0)))
    assert machine_model.cpu_model("kvm", 3) == "host"
    monkeypatch.setattr(machine_model, "_host_flags", lambda: set(
        machine_model.features(2, 0)))
    with pytest.raises(errors.BuildError) as exc:
        machine_model.cpu_model("kvm", 3, "RHEL 10")
    assert str(exc.value).startswith(
        "RHEL 10 needs an x86-64-v3 CPU, and this host's CPU lacks avx, avx2")


#: A QEMU that answers the probe as QEMU 7.1 does: its TCG emulates no AVX,
#: so even ``max`` is x86-64-v2 at most.
OLD_QEMU = """#!{python}
import json, sys
text = sys.stdin.read()
decoder, at, requests = json.JSONDecoder(), 0, []
while at < len(text):
    request, at = decoder.raw_decode(text, at)
    requests.append(request)
print(json.dumps({{"QMP": {{}}}}))
for request in requests:
    command = request["execute"]
    if command == "query-cpu-definitions":
        reply = [{{"name": "max", "unavailable-features": []}},
                 {{"name": "Haswell-v4", "unavailable-features": ["pcid"]}}]
    elif command == "query-cpu-model-expansion":
        name = request["arguments"]["model"]["name"]
        props = {{f: True for f in {v2}}}
        if name != "max":
            props.update({{f: True for f in {v3}}})
        reply = {{"model": {{"name": name, "props": props}}}}
    else:
        reply = {{}}
    print(json.dumps({{"return": reply}}))
"""


@pytest.fixture
def old_qemu(tmp_path):
    bindir = tmp_path / "bin"
    bindir.mkdir()
    path = bindir / machine_model.QEMU
    path.write_text(OLD_QEMU.format(
        python=sys.executable, v2=machine_model.features(2),
        v3=machine_model.features(3)))
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return str(bindir)


def test_a_level_tcg_cannot_emulate_is_one_line(old_qemu):
    binary = os.path.join(old_qemu, machine_model.QEMU)
    assert machine_model.cpu_model("tcg", 2, binary=binary) == "max"
    with pytest.raises(errors.BuildError) as exc:
        machine_model.cpu_model("tcg", 3, "CentOS-Stream 10", binary=binary)
    assert str(exc.value) == (
        "CentOS-Stream 10 needs an x86-64-v3 CPU, and QEMU under TCG "
        "emulates no CPU model with " + ", ".join(machine_model.features(3))
        + " (QEMU 7.2 and later do): use KVM or a newer QEMU")


def test_base_image_whose_baseline_cannot_be_met_fails_in_one_line(
        old_qemu, tmp_path):
    path = tmp_path / "c10.tdl"
    path.write_text(textwrap.dedent("""\
        <template><name>c10</name><os>
          <name>CentOS-Stream</name><version>10</version><arch>x86_64</arch>
          <install type='url'><url>http://127.0.0.1:9/os/</url></install>
          <rootpw>secret-root</rootpw>
        </os></template>"""))
    config = tmp_path / "imgfac-nova.conf"
    config.write_text("[DEFAULT]\nstorage_path = %s\n" % (tmp_path / "store"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("OS_")}
    env["PATH"] = old_qemu + os.pathsep + env["PATH"]
    result = subprocess.run(
        [sys.executable, "-m", "imgfac_nova.cli", "--config-file",
         str(config), "base_image", "--parameter", "os_plugin", "local",
         "--parameter", "accel", "tcg", str(path)], env=env,
        capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines()
             if line.startswith("imgfac-nova: error:")]
    assert lines == ["imgfac-nova: error: CentOS-Stream 10 needs an x86-64-v3 "
                     "CPU, and QEMU under TCG emulates no CPU model with "
                     + ", ".join(machine_model.features(3)) + " (QEMU 7.2 "
                     "and later do): use KVM or a newer QEMU"]
    assert "Traceback" not in result.stderr and result.stdout == ""
    assert store.ImageStore(str(tmp_path / "store")).list() == []
    left = os.listdir(tmp_path / "store")
    assert [n for n in left if not n.startswith((store.SQLITE_NAME, "."))] \
        == []


def test_probe_of_a_qemu_that_answers_nothing_is_one_line(tmp_path):
    fake = tmp_path / "qemu"
    fake.write_text("#!/bin/sh\nexit 1\n")
    fake.chmod(0o755)
    with pytest.raises(errors.BuildError, match="did not list its CPU models"):
        machine_model.tcg_models(str(fake))


def test_default_machine_keeps_pc_and_qemu64():
    assert qemu.machine_options() == ["-machine", "pc"]
    assert qemu.machine_options(machine_model.Machine()) == ["-machine", "pc"]
    assert json.dumps(machine_model.Machine().scope()) == "{}"


def _descriptor(directory, name, code, template, features=(),
                machines=("pc-i440fx-*", "pc-q35-*")):
    directory.mkdir(parents=True, exist_ok=True)
    (directory / name).write_text(json.dumps({
        "interface-types": ["uefi"],
        "mapping": {"device": "flash",
                    "executable": {"filename": str(code), "format": "raw"},
                    "nvram-template": {"filename": str(template),
                                       "format": "raw"}},
        "targets": [{"architecture": "x86_64", "machines": list(machines)}],
        "features": list(features)}))


def test_uefi_firmware_is_chosen_from_qemus_descriptors(tmp_path):
    for name in ("code", "vars", "sb-code", "sb-vars", "etc-code"):
        (tmp_path / name).write_text(name)
    etc, share = tmp_path / "etc", tmp_path / "share"
    _descriptor(share, "30-missing.json", tmp_path / "gone", tmp_path / "vars")
    _descriptor(share, "40-enrolled.json", tmp_path / "sb-code",
                tmp_path / "sb-vars", ("secure-boot", "enrolled-keys",
                                       "requires-smm"), ("pc-q35-*",))
    _descriptor(share, "45-setup-mode.json", tmp_path / "code",
                tmp_path / "vars", ("secure-boot", "requires-smm"))
    _descriptor(share, "50-i440fx-only.json", tmp_path / "code",
                tmp_path / "vars", machines=("pc-i440fx-*",))
    _descriptor(share, "60-plain.json", tmp_path / "code", tmp_path / "vars")
    dirs = (str(etc), str(share))
    plain = machine_model.uefi_firmware(False, dirs)
    assert (plain.code, plain.vars_template, plain.secure_boot, plain.smm) \
        == (str(tmp_path / "code"), str(tmp_path / "vars"), False, False)
    secure = machine_model.uefi_firmware(True, dirs)
    assert (secure.code, secure.secure_boot, secure.smm) == (
        str(tmp_path / "sb-code"), True, True)
    # A file of the same name in an earlier directory hides the later one.
    _descriptor(etc, "60-plain.json", tmp_path / "etc-code", tmp_path / "vars")
    assert machine_model.uefi_firmware(False, dirs).code == str(
        tmp_path / "etc-code")


def test_no_uefi_firmware_is_one_line(tmp_path):
    with pytest.raises(errors.BuildError) as exc:
        machine_model.uefi_firmware(True, (str(tmp_path),))
    assert str(exc.value) == (
        "no UEFI firmware with Secure Boot and enrolled keys for x86_64 q35 "
        "machines in %s (Debian: apt-get install ovmf)" % tmp_path)


@pytest.mark.parametrize("secure_boot", [False, True])
def test_this_host_has_ovmf(secure_boot):
    """tools/install-deps installs Debian's ovmf."""
    firmware = machine_model.uefi_firmware(secure_boot)
    assert os.path.getsize(firmware.code) > 1024 ** 2
    assert firmware.smm == secure_boot


def test_uefi_machine_on_the_qemu_command_line(tmp_path):
    code, template = tmp_path / "code.fd", tmp_path / "vars.fd"
    code.write_text("code")
    template.write_text("empty variables")
    machine = machine_model.Machine("Nehalem-v1", machine_model.Firmware(
        str(code), str(template), secure_boot=True, smm=True))
    backend = local.LocalBackend(str(tmp_path / "work"), "tcg",
                                 machine=machine)
    (tmp_path / "work").mkdir()
    installer = backend._vm("installer", str(tmp_path / "disk.qcow2"))
    guest = backend._vm("guest", str(tmp_path / "guest.qcow2"))
    try:
        nvram = str(tmp_path / "work" / "uefi-vars.fd")
        for vm in (installer, guest):
            line = " ".join(vm._argv)
            assert "-machine q35,smm=on -cpu Nehalem-v1 -global driver=" \
                "cfi.pflash01,property=secure,value=on" in line
            assert "-drive if=pflash,format=raw,unit=0,readonly=on,file=" \
                + str(code) in line
            # Both VMs of a build share its one copy of the variables.
            assert "-drive if=pflash,format=raw,unit=1,file=" + nvram in line
        # A q35's CD-ROMs are SCSI (virtio-scsi), not AHCI.
        with_cd = backend._vm("guest", str(tmp_path / "g.qcow2"),
                              cdroms=["/cd.iso"])
        with_cd.kill()
        line = " ".join(with_cd._argv)
        assert "-device virtio-scsi-pci,id=scsi0 -drive file=/cd.iso,if=none," \
            "id=cd0,media=cdrom,readonly=on -device scsi-cd,bus=scsi0.0," \
            "drive=cd0" in line
        assert open(nvram).read() == "empty variables"
        assert backend.jeos_scope()["firmware"] == "uefi-secure-boot"
    finally:
        installer.kill()
        guest.kill()


def test_secure_boot_needs_uefi():
    with pytest.raises(errors.BuildError, match="^secure_boot needs firmware "
                       "uefi$"):
        local_plugin._machine(_template("Debian", "12"),
                              {"firmware": "bios", "secure_boot": True},
                              "tcg")
