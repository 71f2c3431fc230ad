#!/usr/bin/env bash
# Air-gapped build: local stand-ins for the upstream base images, built only from
# Debian packages, for machines that reach Debian's archive and PyPI but no
# container registry.
#
#   airgap/build.sh                      # build every image that is missing
#   airgap/build.sh python postgres      # only these (and what they need, first)
#   FORCE=1 airgap/build.sh postgres     # rebuild postgres even if it exists
#
# Images (short name -> image):
#   debian     -> wine-mlops-airgap/debian:bookworm    (debootstrap minbase + docker import)
#   python     -> wine-mlops-airgap/python:3.11        (FROM debian)
#   postgres   -> wine-mlops-airgap/postgres:15        (FROM debian)
#   prometheus -> wine-mlops-airgap/prometheus:2       (FROM debian)
#   alertmanager -> wine-mlops-airgap/alertmanager:0.25 (FROM debian)
#
# FORCE=1 rebuilds the images named on the command line (all of them when none
# is named); a dependency that is not named is only built when it is missing.
#
# The Debian mirror is read at run time from the machine's apt sources: no
# mirror or registry host name is written in this repository.
#
# Needs: root (debootstrap), docker, debootstrap (see .ci/setup-docker.sh).
set -euo pipefail

readonly PREFIX="wine-mlops-airgap"
readonly SUITE="bookworm"
readonly HOST_CA_BUNDLE="/etc/ssl/certs/ca-certificates.crt"
AIRGAP_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
readonly AIRGAP_DIR
readonly ALL_IMAGES=(debian python postgres prometheus alertmanager)

# The engine on these machines has no buildx: use the classic builder explicitly
# (the Dockerfiles here are classic-compatible).
export DOCKER_BUILDKIT=0

log() { printf '%s\n' "$*"; }
die() { printf 'airgap/build.sh: error: %s\n' "$*" >&2; exit 1; }

usage() {
  sed -n '2,23p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
}

image_ref() {
  case "$1" in
    debian) echo "$PREFIX/debian:$SUITE" ;;
    python) echo "$PREFIX/python:3.11" ;;
    postgres) echo "$PREFIX/postgres:15" ;;
    prometheus) echo "$PREFIX/prometheus:2" ;;
    alertmanager) echo "$PREFIX/alertmanager:0.25" ;;
    *) return 1 ;;
  esac
}

image_exists() { docker image inspect "$1" >/dev/null 2>&1; }

# The content digest of airgap/<name>/ (file names and bytes). Images built from a
# Dockerfile carry it as a label, so a changed Dockerfile or entrypoint is rebuilt by the
# next run instead of being silently skipped as "already exists".
source_digest() {
  (cd "$AIRGAP_DIR/$1" && find . -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum) \
    | sha256sum | cut -c1-16
}

image_digest() {
  docker image inspect --format '{{ index .Config.Labels "wine-mlops.airgap.digest" }}' "$1" \
    2>/dev/null || true
}

# --- Debian mirror and apt sources, read from this machine -------------------

# Print the deb822 stanzas (blank-line separated) of type "deb" whose Suites
# name bookworm or bookworm-*, comment lines dropped.
host_deb822_stanzas() {
  local f
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -r "$f" ] || continue
    awk -v suite="$SUITE" '
      BEGIN { RS = ""; ORS = "\n\n" }
      {
        n = split($0, lines, "\n"); out = ""; types = ""; suites = ""; enabled = "yes"
        for (i = 1; i <= n; i++) {
          if (lines[i] ~ /^[ \t]*#/) continue
          out = out lines[i] "\n"
          if (tolower(lines[i]) ~ /^types:/)   types = substr(lines[i], 7)
          if (tolower(lines[i]) ~ /^suites:/)  suites = substr(lines[i], 8)
          if (tolower(lines[i]) ~ /^enabled:/) enabled = tolower(substr(lines[i], 9))
        }
        if (enabled ~ /no/) next
        if (types !~ /(^|[ \t])deb([ \t]|$)/) next
        m = split(suites, s, /[ \t]+/); ok = 0
        for (j = 1; j <= m; j++) if (s[j] == suite || index(s[j], suite "-") == 1) ok = 1
        if (ok) printf "%s\n", out
      }' "$f"
  done
}

# Print the one-line "deb" entries of /etc/apt/sources.list for bookworm*.
host_list_lines() {
  [ -r /etc/apt/sources.list ] || return 0
  awk -v suite="$SUITE" '
    $1 == "deb" {
      i = 2
      if ($i ~ /^\[/) { while (i <= NF && $i !~ /\]$/) i++; i++ }   # skip [options]
      if ($(i + 1) == suite || index($(i + 1), suite "-") == 1) print
    }' /etc/apt/sources.list
}

# The mirror URI serving the plain "bookworm" suite.
find_mirror() {
  local mirror
  mirror="$(host_deb822_stanzas | awk -v suite="$SUITE" '
    BEGIN { RS = "" }
    {
      uri = ""; hit = 0; n = split($0, lines, "\n")
      for (i = 1; i <= n; i++) {
        if (tolower(lines[i]) ~ /^uris:/) { split(substr(lines[i], 6), u, /[ \t]+/); uri = (u[1] != "" ? u[1] : u[2]) }
        if (tolower(lines[i]) ~ /^suites:/) {
          m = split(substr(lines[i], 8), s, /[ \t]+/)
          for (j = 1; j <= m; j++) if (s[j] == suite) hit = 1
        }
      }
      if (hit && uri != "") { print uri; exit }
    }')"
  if [ -z "$mirror" ]; then
    mirror="$(host_list_lines | awk -v suite="$SUITE" '
      { i = 2; if ($i ~ /^\[/) { while (i <= NF && $i !~ /\]$/) i++; i++ }
        if ($(i + 1) == suite) { print $i; exit } }')"
  fi
  [ -n "$mirror" ] || die "no apt source for suite '$SUITE' in /etc/apt/sources.list.d/*.sources or /etc/apt/sources.list"
  printf '%s\n' "$mirror"
}

# --- debian: debootstrap + docker import ---------------------------------------

ROOTFS_TMP=""
cleanup_rootfs() {
  [ -n "$ROOTFS_TMP" ] && [ -d "$ROOTFS_TMP" ] || return 0
  # A failed debootstrap can leave /proc, /sys or a bind-mounted /dev mounted in
  # the target: unmount them (deepest first) before deleting anything, and never
  # let rm cross into another file system.
  local mnt
  awk -v d="$ROOTFS_TMP/" 'index($2, d) == 1 { print $2 }' /proc/mounts | sort -r |
    while read -r mnt; do umount -l "$mnt" 2>/dev/null || true; done
  rm -rf --one-file-system "$ROOTFS_TMP"
  ROOTFS_TMP=""
}
trap cleanup_rootfs EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

build_debian() {
  local ref="$1" mirror rootfs logfile sources
  [ "$(id -u)" -eq 0 ] || die "debootstrap needs root"
  command -v debootstrap >/dev/null || die "debootstrap is not installed (apt-get install debootstrap)"
  [ -s "$HOST_CA_BUNDLE" ] || die "host CA bundle $HOST_CA_BUNDLE is missing"
  mirror="$(find_mirror)"

  ROOTFS_TMP="$(mktemp -d "${TMPDIR:-/var/tmp}/wine-mlops-airgap.XXXXXX")"
  rootfs="$ROOTFS_TMP/rootfs"
  logfile="$ROOTFS_TMP/debootstrap.log"
  log "    debootstrap --variant=minbase $SUITE (mirror from the apt sources; log: $logfile)"
  if ! debootstrap --variant=minbase "$SUITE" "$rootfs" "$mirror" >"$logfile" 2>&1; then
    log "    debootstrap failed; last lines of its log:" >&2
    tail -n 40 "$logfile" >&2
    [ -f "$rootfs/debootstrap/debootstrap.log" ] && tail -n 20 "$rootfs/debootstrap/debootstrap.log" >&2
    die "debootstrap failed"
  fi

  # apt sources: the same Debian stanzas as this machine (bookworm, -updates,
  # -security), so derived images get security updates; fall back to what
  # debootstrap wrote (the main suite only).
  sources="$(host_deb822_stanzas)"
  if [ -n "$sources" ]; then
    printf '%s' "$sources" >"$rootfs/etc/apt/sources.list.d/debian.sources"
    rm -f "$rootfs/etc/apt/sources.list"
  else
    sources="$(host_list_lines)"
    [ -z "$sources" ] || printf '%s\n' "$sources" >"$rootfs/etc/apt/sources.list"
  fi

  # Container conventions (as in the official Debian images): services are never
  # started by package scripts, apt keeps no .deb files, dpkg skips docs/man/locales.
  printf '#!/bin/sh\n# never start services while building an image\nexit 101\n' >"$rootfs/usr/sbin/policy-rc.d"
  chmod 0755 "$rootfs/usr/sbin/policy-rc.d"
  cat >"$rootfs/etc/apt/apt.conf.d/docker-clean" <<'CONF'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
CONF
  printf 'APT::Install-Recommends "false";\nAPT::Install-Suggests "false";\n' >"$rootfs/etc/apt/apt.conf.d/docker-no-recommends"
  cat >"$rootfs/etc/dpkg/dpkg.cfg.d/docker-excludes" <<'CONF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
CONF

  # The host CA bundle: HTTPS from containers goes through a network path whose
  # CA is only in this bundle. It is installed twice:
  #  - as /etc/ssl/certs/ca-certificates.crt, used directly (no ca-certificates
  #    package in minbase);
  #  - split into one file per certificate under /usr/local/share/ca-certificates/,
  #    so that when a derived image installs Debian's ca-certificates (whose
  #    update-ca-certificates regenerates the bundle) every host CA stays in it.
  mkdir -p "$rootfs/etc/ssl/certs" "$rootfs/usr/local/share/ca-certificates/airgap-host"
  cp "$HOST_CA_BUNDLE" "$rootfs/etc/ssl/certs/ca-certificates.crt"
  chmod 0644 "$rootfs/etc/ssl/certs/ca-certificates.crt"
  awk -v dir="$rootfs/usr/local/share/ca-certificates/airgap-host" '
    /-----BEGIN CERTIFICATE-----/ { n++; file = sprintf("%s/host-ca-%04d.crt", dir, n); inside = 1 }
    inside { print > file }
    /-----END CERTIFICATE-----/ { inside = 0; close(file) }' "$HOST_CA_BUNDLE"

  # What the dpkg excludes above would have left out had they applied from the
  # start (documentation, manual pages, translations; copyright files stay).
  find "$rootfs/usr/share/doc" -mindepth 1 ! -type d ! -name copyright -delete
  find "$rootfs/usr/share/doc" -mindepth 1 -type d -empty -delete
  rm -rf "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/*
  find "$rootfs/usr/share/locale" -mindepth 1 -maxdepth 1 ! -name locale.alias -exec rm -rf {} +

  # Host-specific or cache files that do not belong in an image.
  rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/* \
    "$rootfs"/var/log/* "$rootfs"/tmp/* "$rootfs/debootstrap"
  : >"$rootfs/etc/resolv.conf"
  rm -f "$rootfs/etc/hostname"

  log "    docker import -> $ref"
  tar --numeric-owner -C "$rootfs" -c . | docker import \
    --change 'CMD ["bash"]' \
    --change "LABEL org.opencontainers.image.title=\"$ref\"" \
    --change 'LABEL org.opencontainers.image.description="Debian bookworm minbase root file system (debootstrap), with the build host CA bundle"' \
    --change 'LABEL org.opencontainers.image.source="wine-mlops reference stack: airgap/build.sh"' \
    - "$ref" >/dev/null
  cleanup_rootfs
}

# --- images built from a Dockerfile in airgap/<name>/ -------------------------

build_dockerfile() {
  local name="$1" ref="$2" buildlog
  buildlog="$(mktemp "${TMPDIR:-/tmp}/wine-mlops-airgap-$name.XXXXXX.log")"
  log "    docker build airgap/$name (classic builder; log: $buildlog)"
  if ! docker build --build-arg "BASE_IMAGE=$(image_ref debian)" \
    --label "wine-mlops.airgap.digest=$(source_digest "$name")" \
    -t "$ref" "$AIRGAP_DIR/$name" >"$buildlog" 2>&1; then
    log "    docker build failed; last lines of its log:" >&2
    tail -n 40 "$buildlog" >&2
    die "building $ref failed"
  fi
  rm -f "$buildlog"
}

# --- main --------------------------------------------------------------------

build_one() {
  local name="$1" ref start old_id
  ref="$(image_ref "$name")"
  old_id="$(docker image inspect --format '{{.Id}}' "$ref" 2>/dev/null || true)"
  if image_exists "$ref" && [ "${2:-}" != "force" ]; then
    if [ "$name" = debian ] || [ "$(image_digest "$ref")" = "$(source_digest "$name")" ]; then
      log "==> $ref already exists, skipping (FORCE=1 rebuilds it)"
      return 0
    fi
    log "==> airgap/$name changed since $ref was built: rebuilding it"
  fi
  log "==> building $ref ..."
  start=$SECONDS
  if [ "$name" = debian ]; then build_debian "$ref"; else build_dockerfile "$name" "$ref"; fi
  # A forced rebuild leaves the previous image untagged: remove it (this fails,
  # harmlessly, while other images or containers still use it).
  if [ -n "$old_id" ] && [ "$old_id" != "$(docker image inspect --format '{{.Id}}' "$ref")" ]; then
    docker image rm "$old_id" >/dev/null 2>&1 || true
  fi
  log "==> built $ref in $((SECONDS - start)) s ($(docker image inspect --format '{{.Size}}' "$ref" | awk '{ printf "%.0f MB", $1 / 1e6 }'))"
}

main() {
  local requested=() name r want total_start=$SECONDS
  for name in "$@"; do
    case "$name" in
      -h | --help) usage; exit 0 ;;
      -*) die "unknown option '$name' (see --help)" ;;
    esac
    image_ref "$name" >/dev/null || die "unknown image '$name' (known: ${ALL_IMAGES[*]})"
    requested+=("$name")
  done
  [ "${#requested[@]}" -gt 0 ] || requested=("${ALL_IMAGES[@]}")

  command -v docker >/dev/null || die "docker is not installed (see .ci/setup-docker.sh)"
  docker info >/dev/null 2>&1 || die "the Docker engine does not answer (see .ci/setup-docker.sh)"

  # Every image but debian is built FROM debian: it always comes first.
  for name in "${ALL_IMAGES[@]}"; do
    want=""
    for r in "${requested[@]}"; do [ "$r" = "$name" ] && want=yes; done
    if [ -n "$want" ]; then
      build_one "$name" "$([ "${FORCE:-0}" = 1 ] && echo force)"
    elif [ "$name" = debian ]; then
      build_one debian   # dependency: only when missing
    fi
  done

  log "==> done in $((SECONDS - total_start)) s"
  log ""
  log "Use the stand-ins with docker compose by setting:"
  log "  PYTHON_IMAGE=$(image_ref python) POSTGRES_IMAGE=$(image_ref postgres) PROMETHEUS_IMAGE=$(image_ref prometheus)"
  log "  ALERTMANAGER_IMAGE=$(image_ref alertmanager)"
  log "Grafana and Jenkins have no stand-in: Debian has no package for them."
}

main "$@"
