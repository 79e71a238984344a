#!/bin/bash
#
# plugin.sh - devstack plugin for imgfac-nova
#
# devstack sources this file as "plugin.sh MODE [PHASE]" (see devstack's
# doc/source/plugins.rst); the work is done by the functions in
# lib/imgfac-nova, all named imgfac_nova_*.

source "$IMGFAC_NOVA_DIR/devstack/lib/imgfac-nova"

if is_service_enabled imgfac-nova; then
    if [[ "$1" == "stack" ]]; then
        case "$2" in
            pre-install)
                echo_summary "Checking imgfac-nova prerequisites"
                imgfac_nova_check_prerequisites
                ;;
            install)
                echo_summary "Installing imgfac-nova"
                imgfac_nova_install
                ;;
            post-config)
                echo_summary "Configuring imgfac-nova"
                imgfac_nova_configure
                if is_service_enabled imgfac-api && is_service_enabled key; then
                    imgfac_nova_create_accounts
                fi
                ;;
            extra)
                echo_summary "Preparing the cloud for imgfac-nova builds"
                imgfac_nova_prepare_cloud
                if is_service_enabled imgfac-zookeeper; then
                    echo_summary "Starting ZooKeeper and $IMGFAC_NOVA_WORKERS imgfac-nova workers"
                    imgfac_nova_start_workers
                fi
                if is_service_enabled imgfac-api; then
                    echo_summary "Starting imgfac-api"
                    imgfac_nova_start
                fi
                ;;
            test-config)
                if [[ "$IMGFAC_NOVA_SMOKE_BUILD" == "True" ]]; then
                    imgfac_nova_smoke_build
                fi
                ;;
        esac
    fi

    if [[ "$1" == "unstack" ]]; then
        echo_summary "Stopping imgfac-nova"
        imgfac_nova_stop
    fi

    if [[ "$1" == "clean" ]]; then
        echo_summary "Cleaning imgfac-nova"
        imgfac_nova_cleanup
    fi
fi
