"""The devstack contract test runs only when DEVSTACK_DIR names a devstack
checkout (``tox -e devstack-contract``); without it the module is not
collected at all."""
import os

collect_ignore = [] if os.environ.get("DEVSTACK_DIR") else [
    "test_devstack_contract.py"]
