#!/usr/bin/env bash
# A THROWAWAY certificate authority and one server certificate, for tests and trials only.
#
#   bash deploy/make-test-ca.sh DIR [NAME ...]
#
# writes into DIR (created 0700):
#   ca.crt       the CA's certificate: give it to clients (curl --cacert, [server] ca_file)
#   ca.key       the CA's key (0600); nothing else ever needs it: delete it after a trial
#   server.crt   a server certificate signed by the CA, valid for 30 days, with subjectAltName
#                127.0.0.1, ::1 and localhost, plus each NAME given (a DNS name or an IP address)
#   server.key   its key (0600): [server] tls_key
#   server.pem   server.crt followed by server.key (0600): what haproxy's 'crt' takes
#
# The CA is made fresh on every run and trusted by nobody but whoever is given ca.crt. Do not use
# it for a real group: a node's certificate for production comes from the operator's own CA or a
# public one (docs/operations.md, "TLS").
set -euo pipefail

if [ $# -lt 1 ]; then
  echo "usage: $0 DIR [NAME ...]   (a throwaway CA and server certificate, for tests only)" >&2
  exit 2
fi
dir=$1
shift
umask 077
mkdir -p "$dir"
chmod 700 "$dir"

san="DNS:localhost,IP:127.0.0.1,IP:::1"
for name in "$@"; do
  if [[ $name =~ ^[0-9.]+$ || $name == *:* ]]; then
    san="$san,IP:$name"
  else
    san="$san,DNS:$name"
  fi
done

openssl req -x509 -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -sha256 -days 30 \
  -subj "/CN=watchnet throwaway test CA" \
  -addext "basicConstraints=critical,CA:TRUE" \
  -addext "keyUsage=critical,keyCertSign,cRLSign" \
  -keyout "$dir/ca.key" -out "$dir/ca.crt" 2>/dev/null

openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -sha256 \
  -subj "/CN=localhost" -keyout "$dir/server.key" -out "$dir/server.csr" 2>/dev/null

cat >"$dir/server.ext" <<EOF
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=$san
EOF
openssl x509 -req -in "$dir/server.csr" -CA "$dir/ca.crt" -CAkey "$dir/ca.key" -CAcreateserial \
  -days 30 -sha256 -extfile "$dir/server.ext" -out "$dir/server.crt" 2>/dev/null

cat "$dir/server.crt" "$dir/server.key" >"$dir/server.pem"
rm -f "$dir/server.csr" "$dir/server.ext" "$dir/ca.srl"
chmod 600 "$dir/ca.key" "$dir/server.key" "$dir/server.pem"
chmod 644 "$dir/ca.crt" "$dir/server.crt"
echo "throwaway test CA and server certificate ($san) in $dir; for tests and trials only"
