"""Our Zuul job against DEVSTACK_DIR's own job definitions and roles.

The job imgfac-nova-devstack and its playbooks may only use what devstack
defines: the parent job, the roles the playbooks name, the job variables
devstack's roles read, and service names devstack's jobs switch (or our
plugin's own). A rename in devstack shows up here, not in the gate.
"""
import os
import re

import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(os.path.dirname(HERE)))
DEVSTACK_DIR = os.environ.get("DEVSTACK_DIR", "")
JOB = "imgfac-nova-devstack"
#: Services of our own plugin (devstack/settings, devstack/plugin.sh).
OUR_SERVICES = {"imgfac-nova", "imgfac-api"}


def _load(path):
    with open(path) as f:
        return yaml.safe_load(f)


def _jobs(path):
    return {d["job"]["name"]: d["job"] for d in _load(path) if "job" in d}


def _our_job():
    return _jobs(os.path.join(REPO, ".zuul.yaml"))[JOB]


def _devstack_jobs():
    return _jobs(os.path.join(DEVSTACK_DIR, ".zuul.yaml"))


def _ancestry(name):
    """devstack's job ``name`` and its parents, as far as devstack defines
    them."""
    jobs = _devstack_jobs()
    chain = []
    while name in jobs:
        chain.append(jobs[name])
        name = jobs[name].get("parent")
    return chain


def _playbooks(job):
    paths = [job["run"]] + [job[k] for k in ("pre-run", "post-run")
                            if k in job]
    return {p: _load(os.path.join(REPO, p)) for p in paths}


def _roles_of(play):
    """Role names a play uses: its roles list and include_role tasks."""
    names = [r["role"] if isinstance(r, dict) else r
             for r in play.get("roles", [])]
    for task in play.get("tasks", []):
        for key in ("include_role", "import_role"):
            if key in task:
                names.append(task[key]["name"])
    return names


def _devstack_text(*parts):
    """All YAML of devstack's jobs, roles and playbooks, for finding where
    a variable is read."""
    text = []
    for top in parts:
        for root, _, files in os.walk(os.path.join(DEVSTACK_DIR, top)):
            for name in files:
                if name.endswith((".yaml", ".yml", ".j2")):
                    with open(os.path.join(root, name)) as f:
                        text.append(f.read())
    return "\n".join(text)


def test_the_job_is_valid_and_its_parent_is_devstacks():
    job = _our_job()
    assert job["parent"] == "devstack"
    assert "devstack" in _devstack_jobs()
    for path, plays in _playbooks(job).items():
        assert isinstance(plays, list) and plays, path


def test_playbooks_use_only_devstack_roles():
    roles = set(os.listdir(os.path.join(DEVSTACK_DIR, "roles")))
    used = {name for plays in _playbooks(_our_job()).values()
            for play in plays for name in _roles_of(play)}
    assert used, "the run playbook runs devstack through its roles"
    assert used <= roles, used - roles


def test_job_variables_are_read_by_devstack():
    text = _devstack_text("roles", "playbooks")
    for name in _our_job()["vars"]:
        if name == "zuul_copy_output":
            # stage-output (zuul-jobs) reads it; devstack's jobs set it
            assert any(name in job.get("vars", {})
                       for job in _ancestry("devstack")), name
            continue
        assert re.search(r"\b%s\b" % name, text), name


def test_playbook_variables_are_devstacks_or_their_own():
    """Every variable a playbook templates is set by that play, by our
    job's vars, or defaulted by devstack's roles."""
    defaults = set()
    for role in os.listdir(os.path.join(DEVSTACK_DIR, "roles")):
        path = os.path.join(DEVSTACK_DIR, "roles", role, "defaults",
                            "main.yaml")
        if os.path.exists(path):
            defaults |= set(_load(path) or {})
    job = _our_job()
    for path, plays in _playbooks(job).items():
        for play in plays:
            own = set(play.get("vars", {})) | set(job["vars"])
            text = yaml.safe_dump(play)
            for expression in re.findall(r"{{(.*?)}}", text):
                name = re.match(r"\s*(\w+)", expression).group(1)
                assert name in own | defaults, (path, name)


def test_services_are_devstacks_or_ours():
    known = set(OUR_SERVICES)
    for job in _devstack_jobs().values():
        known |= set(job.get("vars", {}).get("devstack_services") or {})
        for group in ("host-vars", "group-vars"):
            for host in (job.get(group) or {}).values():
                known |= set(host.get("devstack_services") or {})
    services = _our_job()["vars"]["devstack_services"]
    assert set(services) <= known, set(services) - known
    assert services["imgfac-nova"] and services["imgfac-api"]


def test_localrc_variables_are_the_plugins():
    with open(os.path.join(REPO, "devstack", "settings")) as f:
        settings = f.read()
    for name in _our_job()["vars"]["devstack_localrc"]:
        assert re.search(r"^%s=" % name, settings, re.M), name
