# Stand-in for the official `apache/kafka:<version>`, built only by `cargo xtask compose-up` on a machine with no
# image registry (never pushed). Debian's JRE 17 (the official image has a JRE 21) and the Kafka jars from Maven
# Central (the build context's `libs/`), laid out as the official image is: /opt/kafka/libs, /opt/kafka/bin/*.sh,
# user `appuser` (uid 1000), data in /var/lib/kafka/data, and /etc/kafka/docker/run as the command, which turns
# KAFKA_* variables into server.properties keys and formats the storage with CLUSTER_ID on the first start.
FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends openjdk-17-jre-headless \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --uid 1000 --user-group --home-dir /home/appuser --create-home appuser \
    && mkdir -p /opt/kafka/bin /opt/kafka/config /etc/kafka/docker /var/lib/kafka/data /mnt/shared/config \
    && chown -R appuser:appuser /var/lib/kafka /opt/kafka/config /etc/kafka /mnt/shared/config
COPY libs/ /opt/kafka/libs/
COPY kafka-bin.sh /opt/kafka/bin/kafka-run-class.sh
COPY kafka-run.sh /etc/kafka/docker/run
RUN cd /opt/kafka/bin \
    && for t in kafka-server-start:kafka.Kafka kafka-storage:kafka.tools.StorageTool \
            kafka-topics:org.apache.kafka.tools.TopicCommand \
            kafka-broker-api-versions:org.apache.kafka.tools.BrokerApiVersionsCommand \
            kafka-console-consumer:org.apache.kafka.tools.consumer.ConsoleConsumer \
            kafka-console-producer:org.apache.kafka.tools.ConsoleProducer \
            kafka-consumer-groups:org.apache.kafka.tools.consumer.group.ConsumerGroupCommand \
            kafka-metadata-quorum:org.apache.kafka.tools.MetadataQuorumCommand; do \
         printf '#!/bin/bash\nexec "$(dirname "$0")/kafka-run-class.sh" %s "$@"\n' "${t#*:}" > "${t%%:*}.sh"; \
       done \
    && chmod +x /opt/kafka/bin/*.sh /etc/kafka/docker/run
USER appuser
VOLUME /var/lib/kafka/data
EXPOSE 9092
CMD ["/etc/kafka/docker/run"]
LABEL org.openbank.standin="kafka"
