#!/bin/sh
# The official image's entrypoint contract: options (or a .conf file) alone
# run redis-server with them; redis-server started as root fixes the
# ownership of its working directory and drops to user redis.
set -e
case $1 in -* | *.conf) set -- redis-server "$@" ;; esac
if [ "$1" = redis-server ]; then
    shift
    # The official build's default is protected-mode no; the options given
    # come after this one and win.
    if [ -n "${1:-}" ] && [ "${1#-}" = "$1" ]; then
        conf=$1
        shift
        set -- redis-server "$conf" --protected-mode no "$@"
    else
        set -- redis-server --protected-mode no "$@"
    fi
    # Its files readable by itself only, unless a umask was chosen.
    [ "$(umask)" != 0022 ] || umask 0077
    if [ "$(id -u)" = 0 ]; then
        find . \! -user redis -exec chown redis '{}' +
        exec gosu redis "$@"
    fi
fi
exec "$@"
