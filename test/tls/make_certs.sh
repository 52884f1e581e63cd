#!/bin/sh
# make_certs.sh DIR: a throwaway CA and the certificates the TLS tests use,
# made with the openssl command into DIR (created; files there are replaced).
#
#   ca.pem                the test CA (trust it: load_verify_locations)
#   server.pem/.key       localhost and 127.0.0.1, signed by the CA
#   client.pem/.key       a client certificate (CN=fiberloop-test-client), signed by the CA
#   expired.pem/.key      localhost and 127.0.0.1, signed by the CA, expired in 2020
#   wronghost.pem/.key    other.example only, signed by the CA
#   unknown.pem/.key      localhost and 127.0.0.1, signed by another CA (other_ca.pem)
#   sni.pem/.key          sni.example, signed by the CA (a second server identity)
#
# EC P-256 keys: quick to make, and the handshakes they sign are cheap.
set -eu
dir=$1
mkdir -p "$dir"
cd "$dir"

key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }

make_ca() {  # make_ca NAME SUBJECT
  key "$1.key"
  openssl req -x509 -new -key "$1.key" -subj "$2" -days 3650 -sha256 \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
    -out "$1.pem" 2>/dev/null
}

# sign NAME CA SUBJECT SAN [STARTDATE ENDDATE]: NAME.pem/.key signed by CA.
sign() {
  name=$1 ca=$2 subject=$3 san=$4
  key "$name.key"
  openssl req -new -key "$name.key" -subj "$subject" -out "$name.csr" 2>/dev/null
  printf 'basicConstraints=CA:FALSE\nsubjectAltName=%s\nextendedKeyUsage=serverAuth,clientAuth\n' \
    "$san" >"$name.ext"
  if [ $# -ge 6 ]; then
    # openssl x509 cannot back-date a certificate; openssl ca can.
    rm -rf "ca-db" && mkdir -p ca-db && : >ca-db/index.txt && echo 1000 >ca-db/serial
    cat >ca-db/ca.cnf <<CNF
[ca]
default_ca = test_ca
[test_ca]
database = ca-db/index.txt
serial = ca-db/serial
new_certs_dir = ca-db
default_md = sha256
policy = any
copy_extensions = none
unique_subject = no
[any]
commonName = supplied
CNF
    openssl ca -batch -config ca-db/ca.cnf -cert "$ca.pem" -keyfile "$ca.key" \
      -startdate "$5" -enddate "$6" -extfile "$name.ext" -in "$name.csr" -out "$name.pem" \
      -notext 2>/dev/null
    rm -rf ca-db
  else
    openssl x509 -req -in "$name.csr" -CA "$ca.pem" -CAkey "$ca.key" -CAcreateserial \
      -days 825 -sha256 -extfile "$name.ext" -out "$name.pem" 2>/dev/null
  fi
  rm -f "$name.csr" "$name.ext"
}

make_ca ca "/CN=fiberloop test CA"
make_ca other_ca "/CN=fiberloop unknown CA"
sign server ca "/CN=localhost" "DNS:localhost,IP:127.0.0.1"
sign client ca "/CN=fiberloop-test-client" "DNS:fiberloop-test-client"
sign expired ca "/CN=localhost" "DNS:localhost,IP:127.0.0.1" 20200101000000Z 20200102000000Z
sign wronghost ca "/CN=other.example" "DNS:other.example"
sign unknown other_ca "/CN=localhost" "DNS:localhost,IP:127.0.0.1"
sign sni ca "/CN=sni.example" "DNS:sni.example"
rm -f ./*.srl
