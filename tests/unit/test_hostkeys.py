"""Host keys the build makes for its guest, and the user data carrying them."""
import email
import subprocess

import paramiko
import pytest
import yaml

from novaimagebuilder.guest import hostkeys


def test_generated_key_is_an_openssh_ed25519_pair(tmp_path):
    key = hostkeys.generate()
    assert key.private.startswith("-----BEGIN OPENSSH PRIVATE KEY-----\n")
    # ssh-keygen (OpenSSH itself) derives the same public key and
    # fingerprint from the private key.
    path = tmp_path / "key"
    path.write_text(key.private)
    path.chmod(0o600)
    derived = subprocess.run(["ssh-keygen", "-y", "-f", str(path)],
                             check=True, capture_output=True, text=True)
    assert derived.stdout.split()[:2] == key.public.split()
    (tmp_path / "key.pub").write_text(key.public + "\n")
    listed = subprocess.run(["ssh-keygen", "-l", "-f", str(path) + ".pub"],
                            check=True, capture_output=True, text=True)
    assert listed.stdout.split()[1] == key.fingerprint
    loaded = paramiko.Ed25519Key.from_private_key_file(str(path))
    assert f"{loaded.get_name()} {loaded.get_base64()}" == key.public
    assert hostkeys.generate().public != key.public


def test_repr_never_shows_the_private_key():
    key = hostkeys.generate()
    secret = key.private.splitlines()[1]
    assert secret not in repr(key) and secret not in str(key)
    assert repr(key) == f"<HostKey ed25519 {key.fingerprint}>"


def _config(text):
    assert text.startswith("#cloud-config\n")
    return yaml.safe_load(text)


def test_user_data_is_cloud_configs_ssh_keys():
    key = hostkeys.generate()
    assert _config(hostkeys.user_data([key])) == {"ssh_keys": {
        "ed25519_private": key.private,
        "ed25519_public": key.public + "\n"}}


def test_given_cloud_config_is_merged_not_replaced():
    key = hostkeys.generate()
    given = ("#cloud-config\npackages: [qemu-guest-agent]\n"
             "ssh_keys:\n  rsa_private: RSA\n  rsa_public: ssh-rsa AAAA\n")
    merged = _config(hostkeys.user_data([key], given))
    assert merged["packages"] == ["qemu-guest-agent"]
    assert merged["ssh_keys"] == {
        "rsa_private": "RSA", "rsa_public": "ssh-rsa AAAA",
        "ed25519_private": key.private, "ed25519_public": key.public + "\n"}


def test_given_ed25519_host_key_is_refused_in_one_line():
    given = "#cloud-config\nssh_keys: {ed25519_private: X}\n"
    with pytest.raises(ValueError) as caught:
        hostkeys.user_data([hostkeys.generate()], given)
    assert str(caught.value) == (
        "the user data already sets the SSH host key ed25519_private; give "
        "ssh_host_keys console to keep it")
    with pytest.raises(ValueError, match="#cloud-config but not a mapping"):
        hostkeys.user_data([hostkeys.generate()], "#cloud-config\n- a\n")


def _parts(text):
    message = email.message_from_string(text)
    assert message.is_multipart()
    return [(p.get_content_type(), p.get_payload(decode=True).decode())
            for p in message.get_payload()]


def test_given_script_becomes_a_part_beside_the_keys():
    key = hostkeys.generate()
    script = "#!/bin/sh\necho hello > /run/hello\n"
    parts = _parts(hostkeys.user_data([key], script))
    assert parts[0] == ("text/x-shellscript", script)
    assert parts[1][0] == "text/cloud-config"
    assert _config(parts[1][1])["ssh_keys"]["ed25519_public"].startswith(
        key.public)


def test_given_multipart_gets_one_part_more():
    key = hostkeys.generate()
    given = hostkeys.user_data([], "#!/bin/sh\ntrue\n")
    parts = _parts(hostkeys.user_data([key], given))
    assert [t for t, _ in parts] == ["text/x-shellscript", "text/cloud-config",
                                     "text/cloud-config"]
    assert _config(parts[2][1])["ssh_keys"]["ed25519_private"] == key.private
