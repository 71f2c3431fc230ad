#!/usr/bin/env bash
# Creates .env from .env.example, filling every empty secret (a *_PASSWORD variable) with a
# fresh random value. Never overwrites an existing file.
#   tools/init-env.sh [TARGET] [EXAMPLE]
set -euo pipefail
target=${1:-.env}
example=${2:-.env.example}
if [ -e "$target" ]; then
  echo "$target exists; leaving it as it is"
  exit 0
fi
umask 077
while IFS= read -r line || [ -n "$line" ]; do
  if [[ $line =~ ^([A-Z0-9_]*PASSWORD)=$ ]]; then
    printf '%s=%s\n' "${BASH_REMATCH[1]}" "$(python3 -c 'import secrets; print(secrets.token_hex(24))')"
  else
    printf '%s\n' "$line"
  fi
done <"$example" >"$target"
echo "wrote $target with new random secrets (mode 600); keep it out of git"
