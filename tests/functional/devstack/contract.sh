#!/bin/bash
#
# The devstack contract test's driver: our devstack plugin run by devstack's
# own function library (stackrc, functions, lib/infra, lib/keystone) the way
# stack.sh, unstack.sh and clean.sh run it, with the imgfac-nova test cloud
# standing for the services devstack would have started.
#
#   contract.sh stack     # stack.sh: python set-up, then every plugin phase
#   contract.sh unstack   # unstack.sh's plugin phase
#   contract.sh clean     # clean.sh's plugin phase
#
# test_devstack_contract.py sets the environment: DEVSTACK_DIR,
# REQUIREMENTS_DIR, CONTRACT_DEST (the sandbox standing for /opt/stack),
# CONTRACT_REPO, CONTRACT_KEYSTONE_URI, OS_CLIENT_CONFIG_FILE (a clouds.yaml
# with devstack's cloud names for the test cloud), SERVICE_PASSWORD,
# ENABLED_SERVICES and the IMGFAC_NOVA_* variables of a local.conf.
#
# What is not devstack's own: SYSTEMCTL points at ./systemctl (no systemd
# here), and the sandbox paths replace /opt/stack.

set -o errexit
set -o xtrace

mode=$1
shim_dir=$(cd "$(dirname "$0")" && pwd)

TOP_DIR=$DEVSTACK_DIR
# Read by stackrc through ${VAR:-default}, as from a local.conf.
LOGDIR=$CONTRACT_DEST/logs
DEVSTACK_VENV=$CONTRACT_DEST/data/venv
SERVICE_HOST=127.0.0.1
source "$TOP_DIR/stackrc"
# stackrc sets these without a default: the sandbox instead of /opt/stack.
DEST=$CONTRACT_DEST
DATA_DIR=$DEST/data
SERVICE_DIR=$DEST/status
FILES=$DEST/files
STACK_USER=$(whoami)

source "$TOP_DIR/lib/infra"
source "$TOP_DIR/lib/keystone"
# The test cloud's Keystone (lib/keystone derives it from SERVICE_HOST).
KEYSTONE_SERVICE_URI=$CONTRACT_KEYSTONE_URI
KEYSTONE_AUTH_URI=$KEYSTONE_SERVICE_URI

# run_process and stop_process call $SYSTEMCTL on units in $SYSTEMD_DIR.
SYSTEMCTL=$shim_dir/systemctl
SYSTEMD_DIR=$DEST/systemd
export SYSTEMD_DIR LOGDIR

# stack.sh's enable_plugin/fetch_plugins: the harness links the worktree
# at GITDIR instead of cloning it.
enable_plugin imgfac-nova "file://$CONTRACT_REPO"
load_plugin_settings

mkdir -p "$DEST" "$DATA_DIR" "$LOGDIR" "$SYSTEMD_DIR" "$FILES"
PYTHON=$(command -v "python$PYTHON3_VERSION")
if [[ -x $DEVSTACK_VENV/bin/python3 ]]; then
    export PATH="$DEVSTACK_VENV/bin:$PATH"
    PYTHON=$DEVSTACK_VENV/bin/python3
fi
export PYTHON

case "$mode" in
    stack)
        # What stack.sh does before the plugins' install phase, as far as
        # our plugin depends on it.
        setup_devstack_virtualenv
        install_infra
        install_keystonemiddleware
        pip_install_gr python-openstackclient
        export OS_CLOUD=devstack-admin
        for phase in pre-install install post-config extra test-config; do
            run_phase stack $phase
        done
        ;;
    unstack|clean)
        run_phase "$mode"
        ;;
    *)
        die $LINENO "usage: contract.sh stack|unstack|clean"
        ;;
esac
