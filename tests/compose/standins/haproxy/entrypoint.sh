#!/bin/sh
# The official image's entrypoint contract: options alone run haproxy with
# them; `haproxy ...` gets master-worker mode in the foreground (-W -db);
# anything else runs as given.
set -e
case $1 in -*) set -- haproxy "$@" ;; esac
if [ "$1" = haproxy ]; then
    shift
    set -- haproxy -W -db "$@"
fi
exec "$@"
