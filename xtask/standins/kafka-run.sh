#!/bin/bash
# /etc/kafka/docker/run of the stand-in Kafka image, after the official image's (apache/kafka, docker/resources):
# every KAFKA_* variable but the launcher's own becomes a server.properties key (KAFKA_ dropped, lower case, `_` to
# `.`, `...` to `-`, `..` to `_`), the storage is formatted with CLUSTER_ID unless it already is, and the broker
# runs in the foreground.
set -euo pipefail
: "${CLUSTER_ID:?CLUSTER_ID is required}"
props=/opt/kafka/config/server.properties
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
cat > /etc/kafka/docker/log4j2.properties <<LOG4J
status = error
appender.console.type = Console
appender.console.name = STDOUT
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = ${KAFKA_LOG4J_ROOT_LOGLEVEL:-INFO}
rootLogger.appenderRef.stdout.ref = STDOUT
LOG4J
/opt/kafka/bin/kafka-storage.sh format --cluster-id="$CLUSTER_ID" -c "$props" --ignore-formatted
exec /opt/kafka/bin/kafka-server-start.sh "$props"
