#!/usr/bin/env bash
# Puts a certificate where apotheca-proxy reads it, then tells the proxy (SIGHUP: it re-reads
# its certificates without dropping a connection; it also notices changed files by itself).
#
# As certbot's deploy hook (certbot sets RENEWED_LINEAGE and RENEWED_DOMAINS):
#   certbot ... --deploy-hook /usr/local/lib/apotheca/cert-deploy-hook.sh
#   - a lineage for *.D (the wildcard, with D itself) becomes the default certificate,
#     [proxy] tls_cert and tls_key (/etc/apotheca/tls/wildcard.crt and .key);
#   - any other lineage (a pharmacy's own domain) goes into [proxy] tls_cert_dir
#     (/etc/apotheca/tls/domains) as <domain>.crt and <domain>.key, one pair per name in it.
# By hand, for a certificate from elsewhere (a pharmacy that brings its own):
#   cert-deploy-hook.sh DOMAIN FULLCHAIN.pem KEY.pem
#
# TLS_DIR overrides /etc/apotheca/tls; PROXY_UNIT overrides apotheca-proxy.service.
set -euo pipefail

tls_dir=${TLS_DIR:-/etc/apotheca/tls}
unit=${PROXY_UNIT:-apotheca-proxy.service}
group=${APOTHECA_GROUP:-apotheca}

die() { echo "error: $*" >&2; exit 2; }

# Copies CERT and KEY to DEST.crt and DEST.key: written beside, then renamed, so the proxy
# never reads half a file; the key readable by the proxy's group only.
place() {
  local cert=$1 key=$2 dest=$3
  [[ -s $cert ]] || die "certificate $cert is missing or empty"
  [[ -s $key ]] || die "key $key is missing or empty"
  grep -q -- '-----BEGIN CERTIFICATE-----' "$cert" || die "$cert is not a PEM certificate"
  grep -q -- '-----BEGIN .*PRIVATE KEY-----' "$key" || die "$key is not a PEM private key"
  if command -v openssl >/dev/null 2>&1; then
    # The key must be the certificate's: a mismatch would fail every handshake for the name.
    [[ $(openssl x509 -noout -pubkey -in "$cert" | sha256sum) == $(openssl pkey -pubout -in "$key" | sha256sum) ]] \
      || die "$key is not the key of $cert"
  fi
  install -m 0644 "$cert" "$dest.crt.new"
  install -m 0640 -g "$group" "$key" "$dest.key.new"
  mv -f "$dest.key.new" "$dest.key"
  mv -f "$dest.crt.new" "$dest.crt"
  echo "installed $dest.crt and $dest.key"
}

domain_ok() { [[ $1 =~ ^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)+$ ]]; }

if (($# == 3)); then
  domain=${1,,}
  domain_ok "$domain" || die "\"$1\" is not a domain name"
  place "$2" "$3" "$tls_dir/domains/$domain"
elif (($# == 0)) && [[ -n ${RENEWED_LINEAGE:-} ]]; then
  wildcard=""
  for name in ${RENEWED_DOMAINS:-}; do
    [[ $name == \*.* ]] && wildcard=${name#\*.}
  done
  if [[ -n $wildcard ]]; then
    place "$RENEWED_LINEAGE/fullchain.pem" "$RENEWED_LINEAGE/privkey.pem" "$tls_dir/wildcard"
  else
    for name in ${RENEWED_DOMAINS:-}; do
      domain_ok "$name" || die "certbot named \"$name\", not a domain"
      place "$RENEWED_LINEAGE/fullchain.pem" "$RENEWED_LINEAGE/privkey.pem" "$tls_dir/domains/$name"
    done
  fi
else
  die "usage: as certbot's --deploy-hook (no arguments), or: $0 DOMAIN FULLCHAIN KEY"
fi

if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet "$unit" 2>/dev/null; then
  systemctl kill --kill-who=main --signal=HUP "$unit"
  echo "told $unit to reload its certificates"
fi
