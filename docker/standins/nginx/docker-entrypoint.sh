#!/bin/sh
# The official nginx image's entrypoint, as far as ferry's compose file uses it: when the command is nginx,
# source the executable *.envsh files of /docker-entrypoint.d and run its executable *.sh files, in version
# order and in one shell, so that what an .envsh exports reaches the scripts after it; then run the command.
set -e
if [ "$1" = nginx ] || [ "$1" = nginx-debug ]; then
    find /docker-entrypoint.d/ -follow -type f -print | sort -V | while read -r f; do
        case "$f" in
            *.envsh) if [ -x "$f" ]; then echo "$0: sourcing $f"; . "$f"; else echo "$0: ignoring $f, not executable"; fi ;;
            *.sh) if [ -x "$f" ]; then echo "$0: launching $f"; "$f"; else echo "$0: ignoring $f, not executable"; fi ;;
            *) echo "$0: ignoring $f" ;;
        esac
    done
fi
exec "$@"
