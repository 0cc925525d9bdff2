#!/bin/bash
# The Kafka node's entrypoint in docker-compose.yml, in front of the image's own /etc/kafka/docker/run (the official
# apache/kafka image's, or the local stand-in's): nobody gets in without a password.
#
# - The client listener (CLIENT, 9092) takes SASL/SCRAM-SHA-256 only. The brokers speak to each other on it as the
#   super user `admin`; every service has its own principal, allowed by ACLs (which the synchronizer creates) to
#   read and write its own topics alone; whatever no ACL allows is refused.
# - The controller listener (CONTROLLER, 9093) takes SASL/PLAIN from `admin` alone.
# - The passwords come from the `secrets` volume (docker/secrets.sh: /run/openbank/kafka, readable by this
#   container's user only). On the first start the storage is formatted with every principal's SCRAM credential,
#   the way `cargo xtask up` formats it natively; the image's run script then finds it formatted.
# - /opt/kafka/config/admin.properties is the super user's client config, for the healthcheck and for the Kafka
#   tools inside this container (`--command-config /opt/kafka/config/admin.properties`).
set -euo pipefail
dir=/run/openbank/kafka
: "${CLUSTER_ID:?CLUSTER_ID is required}"
for f in admin principals; do
  [ -s "$dir/$f" ] || { echo "kafka: $dir/$f is missing: the secrets service makes it" >&2; exit 1; }
done
admin="$(cat "$dir/admin")"
case "$admin" in *[\"\\\;]*) echo "kafka: the admin password holds a quote, backslash or ;" >&2; exit 1 ;; esac

scram="org.apache.kafka.common.security.scram.ScramLoginModule required username=\"admin\" password=\"$admin\";"
plain="org.apache.kafka.common.security.plain.PlainLoginModule required username=\"admin\" password=\"$admin\" user_admin=\"$admin\";"
# The listeners, mechanisms and authorizer are set in docker-compose.yml; only the logins with the password here.
export KAFKA_LISTENER_NAME_CLIENT_SCRAM___SHA___256_SASL_JAAS_CONFIG="$scram"
export KAFKA_LISTENER_NAME_CONTROLLER_PLAIN_SASL_JAAS_CONFIG="$plain"

umask 077
cat > /opt/kafka/config/admin.properties <<PROPS
security.protocol=SASL_PLAINTEXT
sasl.mechanism=SCRAM-SHA-256
sasl.jaas.config=$scram
PROPS

data="${KAFKA_LOG_DIRS:-/var/lib/kafka/data}"
# Written after a format with the credentials: storage without it was formatted before Kafka asked for passwords,
# and no principal could log in to it.
marker="$data/.openbank-scram"
if [ -f "$data/meta.properties" ] && [ ! -f "$marker" ]; then
  echo "kafka: $data was formatted without the SCRAM credentials this stack requires (a kafka-data volume from an" >&2
  echo "kafka: older version): remove it with \`docker compose down -v\` (its topics are lost) and start again" >&2
  exit 1
fi
if [ ! -f "$data/meta.properties" ]; then
  # The image's conversion of KAFKA_* variables into server.properties keys (KAFKA_ dropped, lower case, `_` to
  # `.`, `...` to `-`, `..` to `_`), for the format's config only.
  props=/tmp/format.properties
  : > "$props"
  while IFS='=' read -r key value; do
    case "$key" in
      KAFKA_VERSION|KAFKA_HEAP_OPTS|KAFKA_LOG4J_OPTS|KAFKA_OPTS|KAFKA_JMX_OPTS|KAFKA_JVM_PERFORMANCE_OPTS|\
      KAFKA_GC_LOG_OPTS|KAFKA_LOG4J_ROOT_LOGLEVEL|KAFKA_LOG4J_LOGGERS|KAFKA_TOOLS_LOG4J_LOGLEVEL|KAFKA_JMX_HOSTNAME|\
      KAFKA_JMX_PORT) continue ;;
      KAFKA_*) ;;
      *) continue ;;
    esac
    name="${key#KAFKA_}"; name="${name,,}"; name="${name//_/.}"; name="${name//.../-}"; name="${name//../_}"
    printf '%s=%s\n' "$name" "$value" >> "$props"
  done < <(env)
  args=()
  while read -r principal; do
    [ -n "$principal" ] || continue
    password="$(cat "$dir/$principal")"
    case "$password" in *[,\]=\"\\\;]*) echo "kafka: the password of $principal cannot be given to the format" >&2; exit 1 ;; esac
    args+=(--add-scram "SCRAM-SHA-256=[name=$principal,password=$password]")
  done < "$dir/principals"
  echo "kafka: formatting the storage with the SCRAM credentials of $(tr '\n' ' ' < "$dir/principals")"
  KAFKA_HEAP_OPTS=-Xmx256m /opt/kafka/bin/kafka-storage.sh format --cluster-id="$CLUSTER_ID" -c "$props" "${args[@]}" \
    > /tmp/format.log 2>&1 || { cat /tmp/format.log >&2; exit 1; }
  rm -f "$props"
  touch "$marker"
fi
exec /etc/kafka/docker/run
