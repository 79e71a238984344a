import logging

import pytest

from imgfac_nova import parameters as p

SPECS = (
    p.Parameter("flavor", "flavor name or id"),
    p.Parameter("timeout", "seconds", type="int", default=3600, minimum=1),
    p.Parameter("ratio", "a float", type="float"),
    p.Parameter("request_floating_ip", "bool", type="bool", default=False),
    p.Parameter("visibility", "glance visibility", choices=("private",
                                                            "public")),
    p.Parameter("admin_password", "secret", secret=True),
)


def test_sources_apply_in_order(tmp_path):
    script = tmp_path / "ks.cfg"
    script.write_text("install\nreboot\n")
    json_file = tmp_path / "p.json"
    json_file.write_text('{"flavor": "json", "timeout": 10}')
    values = p.collect([("value", "flavor", "cli"),
                        ("json", str(json_file)),
                        ("file", "install_script", str(script)),
                        ("value", "timeout", "20")])
    assert values == {"flavor": "json", "timeout": "20",
                      "install_script": "install\nreboot\n"}
    assert p.collect([("json", str(json_file)), ("value", "flavor", "cli")])[
        "flavor"] == "cli"


@pytest.mark.parametrize("content,message", [
    ('{"a": 1,}', r"p\.json:1: not valid JSON"),
    ('\n\n[1, 2]', "must hold a JSON object"),
    ('{"a":\n  nope}', r"p\.json:2: not valid JSON"),
])
def test_bad_json_parameters_file(tmp_path, content, message):
    path = tmp_path / "p.json"
    path.write_text(content)
    with pytest.raises(p.ParameterError, match=message) as exc:
        p.collect([("json", str(path))])
    assert "\n" not in str(exc.value)


def test_missing_and_binary_files(tmp_path):
    with pytest.raises(p.ParameterError, match="--file-parameter ks: cannot "
                       "read .*No such file"):
        p.collect([("file", "ks", str(tmp_path / "nope"))])
    binary = tmp_path / "bin"
    binary.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(p.ParameterError, match="not UTF-8"):
        p.collect([("file", "ks", str(binary))])


def test_resolve_casts_and_defaults():
    typed = p.resolve(SPECS, {"flavor": "2", "request_floating_ip": "True",
                              "ratio": "1.5", "os_plugin": "nova"}, "nova",
                      common=("os_plugin",))
    assert typed == {"flavor": "2", "timeout": 3600, "ratio": 1.5,
                     "request_floating_ip": True, "os_plugin": "nova"}
    assert p.resolve(SPECS, {"request_floating_ip": "no", "timeout": 5},
                     "nova")["request_floating_ip"] is False


@pytest.mark.parametrize("key,value,message", [
    ("timeout", "soon", "parameter 'timeout' of plugin nova: expected an "
                        "integer, got 'soon'"),
    ("timeout", True, "expected a number"),
    ("timeout", "-5", "parameter 'timeout' of plugin nova: must be at least 1, "
                      "got -5"),
    ("ratio", "x", "expected a number, got 'x'"),
    ("request_floating_ip", "maybe", "expected true or false, got 'maybe'"),
    ("visibility", "shared", "'shared' is not one of private, public"),
    ("admin_password", 5, None),
])
def test_bad_values(key, value, message):
    if message is None:
        assert p.resolve(SPECS, {key: value}, "nova")[key] == "5"
        return
    with pytest.raises(p.ParameterError) as exc:
        p.resolve(SPECS, {key: value}, "nova")
    assert message in str(exc.value)


def test_secret_values_never_shown_in_errors():
    specs = (p.Parameter("pin", "secret", type="int", secret=True),)
    with pytest.raises(p.ParameterError) as exc:
        p.resolve(specs, {"pin": "hunter2"}, "x")
    assert "hunter2" not in str(exc.value)
    assert "***" in str(exc.value)


def test_unknown_keys_warn_with_known_list(caplog):
    with caplog.at_level(logging.WARNING):
        typed = p.resolve(SPECS, {"flavour": "2"}, "nova")
    assert typed["flavour"] == "2"
    assert "does not know the parameter 'flavour'" in caplog.text
    assert "admin_password, flavor, ratio" in caplog.text


def test_redact():
    values = {"flavor": "2", "admin_password": "s3cret"}
    assert p.redact(SPECS, values) == {"flavor": "2", "admin_password": "***"}
    assert values["admin_password"] == "s3cret"


def test_warn_exposed_secrets(caplog):
    with caplog.at_level(logging.WARNING):
        p.warn_exposed_secrets(SPECS, [("value", "admin_password", "s3cret"),
                                       ("file", "admin_password", "/x")], "nova")
    assert caplog.text.count("secret parameter 'admin_password'") == 1
    assert "s3cret" not in caplog.text
