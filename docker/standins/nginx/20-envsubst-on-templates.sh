#!/bin/sh
# What the official nginx image does with templates: every /etc/nginx/templates/NAME.template becomes
# /etc/nginx/conf.d/NAME, with only the environment variables whose names match NGINX_ENVSUBST_FILTER (all of
# them when it is empty) substituted, so nginx's own $variables stay as they are.
set -e
templates=${NGINX_ENVSUBST_TEMPLATE_DIR:-/etc/nginx/templates}
suffix=${NGINX_ENVSUBST_TEMPLATE_SUFFIX:-.template}
output=${NGINX_ENVSUBST_OUTPUT_DIR:-/etc/nginx/conf.d}
filter=${NGINX_ENVSUBST_FILTER:-}
[ -d "$templates" ] || exit 0
defined=$(printf '${%s} ' $(awk "END { for (name in ENVIRON) { print ( name ~ /${filter}/ ) ? name : \"\" } }" </dev/null))
find "$templates" -follow -type f -name "*$suffix" -print | while read -r template; do
    relative=${template#"$templates/"}
    target="$output/${relative%"$suffix"}"
    mkdir -p "$(dirname "$target")"
    echo "$0: running envsubst on $template to $target"
    envsubst "$defined" <"$template" >"$target"
done
