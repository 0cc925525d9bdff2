#!/bin/bash
# kafka-run-class.sh of the stand-in Kafka image: runs a class of /opt/kafka/libs with KAFKA_HEAP_OPTS and
# KAFKA_OPTS, as the distribution's script does (without its JMX and GC-log options).
CLASS="$1"; shift
case "$CLASS" in
  kafka.Kafka) HEAP="${KAFKA_HEAP_OPTS:--Xmx1G -Xms1G}"; EXTRA="-XX:+UseG1GC -XX:MaxGCPauseMillis=20" ;;
  *) HEAP="${KAFKA_HEAP_OPTS:--Xmx256M}"; EXTRA="" ;;
esac
LOG4J="${KAFKA_LOG4J_OPTS:--Dlog4j2.configurationFile=/etc/kafka/docker/log4j2.properties}"
# shellcheck disable=SC2086
exec java $HEAP $EXTRA -Djava.awt.headless=true $LOG4J $KAFKA_OPTS -cp '/opt/kafka/libs/*' "$CLASS" "$@"
