# shellcheck shell=bash
# License checks of the ops/build-*.sh scripts, over Go modules in the module cache.
# Source it; do not run it.

# license_kind FILE -> BUSL | MPL-2.0 | Apache-2.0 | MIT | BSD | ISC | unknown
license_kind() {
  local f="$1"
  if grep -qiE 'Business Source License|BUSL-1\.1' "$f"; then echo BUSL
  elif grep -qE 'Mozilla Public License,? [Vv]ersion 2\.0' "$f"; then echo MPL-2.0
  elif grep -qE 'Apache License' "$f" && grep -qE 'Version 2\.0' "$f"; then echo Apache-2.0
  elif grep -qE 'Permission is hereby granted, free of charge' "$f"; then echo MIT
  elif grep -qE 'Redistribution and use in source and binary forms' "$f"; then echo BSD
  elif grep -qE 'Permission to use, copy, modify, and(/or)? distribute' "$f"; then echo ISC
  else echo unknown
  fi
}

# check_module_licenses PREFIX KIND < "path version dir" lines
# Every module must have a license file at its root of a recognised kind, none may
# mention the Business Source License, and modules under PREFIX must be KIND. Problems
# go to stderr; prints a one-line summary; false if any module failed.
# A module that ships no license file but states its license in its README is accepted
# only if the caller lists it in the associative array LICENSE_IN_README
# ([path]=KIND) and its README names that license.
check_module_licenses() {
  local prefix="$1" required="$2"
  local path version dir kind bad=0 total=0 summary="" k
  local -a lics
  local -A kinds=()
  while read -r path version dir; do
    [ -n "$path" ] || continue
    total=$((total + 1))
    if [ -z "${dir:-}" ] || [ ! -d "$dir" ]; then
      echo "  $path@$version: module not in cache" >&2; bad=1; continue
    fi
    mapfile -t lics < <(find "$dir" -maxdepth 1 -type f \
      \( -iname 'LICENSE*' -o -iname 'LICENCE*' -o -iname 'COPYING*' \) | sort)
    if [ "${#lics[@]}" -eq 0 ]; then
      kind="${LICENSE_IN_README[$path]:-}"
      if [ -n "$kind" ] && grep -qsiE "^#+ *licen[cs]e" "$dir"/[Rr][Ee][Aa][Dd][Mm][Ee]* \
         && grep -qsw "$kind" "$dir"/[Rr][Ee][Aa][Dd][Mm][Ee]*; then
        kinds[$kind]=$(( ${kinds[$kind]:-0} + 1 ))
        continue
      fi
      echo "  $path@$version: NO LICENSE FILE in $dir" >&2; bad=1; continue
    fi
    if grep -qiE 'Business Source License|BUSL-1\.1' "${lics[@]}"; then
      echo "  $path@$version: Business Source License ($dir)" >&2; bad=1; continue
    fi
    kind="$(license_kind "${lics[0]}")"
    if [ "$path" = "$prefix" ] || [ "${path#"$prefix/"}" != "$path" ]; then
      if [ "$kind" != "$required" ]; then
        echo "  $path@$version: license is $kind, required $required (${lics[0]})" >&2; bad=1; continue
      fi
    elif [ "$kind" = unknown ]; then
      echo "  $path@$version: unrecognised license (${lics[0]})" >&2; bad=1; continue
    fi
    kinds[$kind]=$(( ${kinds[$kind]:-0} + 1 ))
  done
  for k in $(printf '%s\n' "${!kinds[@]}" | sort); do summary+="${summary:+, }$k ${kinds[$k]}"; done
  echo "$total modules ($summary); $prefix and its submodules $required; no BUSL"
  [ "$bad" -eq 0 ]
}
