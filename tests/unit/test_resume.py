"""What a resumed build needs again (secrets are never stored), and which
builds may be resumed."""
import pytest

from imgfac_nova import images
from imgfac_nova import parameters as params
from imgfac_nova import resume
from imgfac_nova import template as tdl
from imgfac_nova import template_model

TEMPLATE = """<template><name>r</name>
  <os><name>Debian</name><version>12</version><arch>x86_64</arch>
    <install type='url'><url>http://example.com/tree/</url></install>
    <rootpw>s3cret-root</rootpw></os>%s
</template>"""
REPOSITORY = """
  <repositories><repository name='r'>
    <url>https://user:pw@mirror.example.com/r/</url>
  </repository></repositories>"""


class Plugin:
    parameters = (params.Parameter("flavor", "f"),
                  params.Parameter("install_script", "s", secret=True),
                  params.Parameter("admin_password", "p", secret=True))


def _record(template=TEMPLATE % "", **parameters):
    source = tdl.parse_template(template)
    return images.ImageRecord(
        type=images.BASE_IMAGE, status=images.BUILDING,
        template=source.redacted_xml(), parameters=params.redact(
            Plugin.parameters, parameters, (source.os.rootpw,))), source


def test_before_the_installer_booted_the_template_is_needed_again():
    record, source = _record()
    with pytest.raises(resume.ResumeError, match=r"holds secrets that are "
                       r"never stored \(root password\).*--template FILE"):
        resume.template_for(record, None, installed_=False)
    assert resume.template_for(record, source, False) is source
    # Once it booted, the stored copy serves (its root password unused).
    kept = resume.template_for(record, None, installed_=True)
    assert kept.os.rootpw == template_model.REDACTED and "s3cret" not in record.template


def test_repository_credentials_are_needed_until_the_end():
    record, source = _record(TEMPLATE % REPOSITORY)
    with pytest.raises(resume.ResumeError,
                       match=r"\(credentials in URLs\)"):
        resume.template_for(record, None, installed_=True)
    other = tdl.parse_template(TEMPLATE.replace("s3cret", "other") % "")
    with pytest.raises(resume.ResumeError, match="not the one image"):
        resume.template_for(record, other, True)


def test_secret_parameters_are_given_again_or_named():
    record, _ = _record(flavor="2", install_script="rootpw x\n",
                        admin_password="hunter2")
    with pytest.raises(resume.ResumeError) as refused:
        resume.values_for(record, Plugin, {}, installed_=False)
    assert str(refused.value) == (
        "image %s needs again parameters that are never stored: "
        "admin_password, install_script; give them with --file-parameter "
        "NAME FILE" % record.identifier)
    # The install script only until the installer booted.
    values = resume.values_for(record, Plugin, {"admin_password": "pw2"},
                               installed_=True)
    assert values == {"flavor": "2", "admin_password": "pw2"}
    with pytest.raises(resume.ResumeError, match="'flavor' is not one"):
        resume.values_for(record, Plugin, {"flavor": "3",
                                           "admin_password": "pw2"}, True)


def test_which_builds_may_be_resumed():
    record, _ = _record()
    assert resume.resumable(record, 24)
    record.updated = "2020-01-01T00:00:00+00:00"
    assert not resume.resumable(record, 24) and resume.resumable(record, 0)
    record.type = images.TARGET_IMAGE
    assert resume.resumable(record, 0)
    record.type = images.PROVIDER_IMAGE
    assert not resume.resumable(record, 0)  # a snapshot push
    with pytest.raises(resume.ResumeError, match="a snapshot push"):
        resume.check(record, lambda r: False)
    record.target_image_id = "its-target"
    assert resume.resumable(record, 0)
    resume.check(record, lambda r: False)
    record.status = images.COMPLETE
    with pytest.raises(resume.ResumeError, match="is COMPLETE: there is "
                       "nothing to resume"):
        resume.check(record, lambda r: False)
