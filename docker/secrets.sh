#!/bin/bash
# The compose stack's secrets, made on its first start: the one-shot `secrets` service of docker-compose.yml runs
# this before anything else. Each secret is a file in the `secrets` volume (/run/openbank), owned by the services'
# user (uid 10001) and readable by it alone; the services read them through `<VAR>_FILE` and PostgreSQL through
# POSTGRES_PASSWORD_FILE, so no secret is in an image, in docker-compose.yml, in git or in an environment variable.
#
# - A secret that is set in the environment (from a .env beside docker-compose.yml) is written as given.
# - Otherwise one made on an earlier start is kept, and a missing one is generated (24 random bytes, base64url).
# - DATABASE_URL is derived from the PostgreSQL password every time.
# - The employee password is printed when it is generated, once; later `docker compose run --rm secrets
#   employee-password` prints it again.
#
# The PostgreSQL password takes effect on the volume's first start only (PostgreSQL keeps the one it was initialised
# with): change it in .env before the first `up`, or `docker compose down -v` first. So do the Kafka passwords (one
# per principal: the super user `admin` and each service, as bank_core::principals lists them): Kafka's storage is
# formatted with them once. Each service reads its own as kafka_password_<name>; the Kafka node reads all of them
# from kafka/ (owned by its image's user, uid 1000) to format its storage.
set -euo pipefail
dir=/run/openbank
umask 077

case "${1:-init}" in
  employee-password)
    cat "$dir/employee_password" 2>/dev/null || { echo "no employee password yet: run docker compose up first" >&2; exit 1; }
    exit 0 ;;
  init) ;;
  *) echo "usage: secrets [init | employee-password]" >&2; exit 2 ;;
esac

generate() { head -c 24 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n'; }

# Percent-encoding for the password inside the database URL.
urlencode() {
  local LC_ALL=C s="$1" out="" c h i
  for ((i = 0; i < ${#s}; i++)); do
    c="${s:i:1}"
    case "$c" in
      [a-zA-Z0-9._~-]) out+="$c" ;;
      *) printf -v h '%%%02X' "'$c"; out+="$h" ;;
    esac
  done
  printf '%s' "$out"
}

write() {
  local name="$1" value="$2" owner="${3:-10001}"
  local tmp
  tmp="$(dirname "$dir/$name")/.$(basename "$name").new"
  printf '%s\n' "$value" > "$tmp"
  chown "$owner:$owner" "$tmp"
  chmod 0400 "$tmp"
  mv -f "$tmp" "$dir/$name"
}

made=()
given=()
# secret FILE VARIABLE: the variable's value, the kept file, or a new one.
secret() {
  local file="$1" var="$2"
  if [ -n "${!var:-}" ]; then
    write "$file" "${!var}"
    given+=("$var")
  elif [ ! -s "$dir/$file" ]; then
    write "$file" "$(generate)"
    made+=("$file")
  fi
}

mkdir -p "$dir"
chmod 0755 "$dir"
secret postgres_password POSTGRES_PASSWORD
secret company_account_token COMPANY_ACCOUNT_TOKEN
secret employee_password EMPLOYEE_PASSWORD
# Kafka's principals: the super user and every service that talks to Kafka.
kafka_principals=(admin heartbeat command-generator command-handler graphql-endpoint)
for p in "${kafka_principals[@]}"; do
  var="KAFKA_PASSWORD_${p//-/_}"
  secret "kafka_password_$p" "${var^^}"
done
mkdir -p "$dir/kafka"
chown 1000:1000 "$dir/kafka"
chmod 0700 "$dir/kafka"
for p in "${kafka_principals[@]}"; do
  write "kafka/$p" "$(cat "$dir/kafka_password_$p")" 1000
done
write kafka/principals "$(printf '%s\n' "${kafka_principals[@]}")" 1000
write database_url "postgres://openbank:$(urlencode "$(cat "$dir/postgres_password")")@${POSTGRES_HOST:-postgres}:5432/openbank"

if [ "${#given[@]}" -gt 0 ]; then
  echo "secrets: set ${given[*]} as given (a .env beside docker-compose.yml)"
fi
if [ "${#made[@]}" -gt 0 ]; then
  echo "secrets: generated ${made[*]} (kept in the volume \`secrets\`; a .env beside docker-compose.yml overrides them)"
elif [ "${#given[@]}" -eq 0 ]; then
  echo "secrets: kept the ones of an earlier start"
elif [ "${#given[@]}" -lt $((3 + ${#kafka_principals[@]})) ]; then
  echo "secrets: kept the others of an earlier start"
fi
if [[ " ${made[*]} " == *" employee_password "* ]]; then
  echo "secrets: web UI employee login: user \`employee\`, password $(cat "$dir/employee_password")"
  echo "secrets: (shown once; print it again with: docker compose run --rm secrets employee-password)"
fi
