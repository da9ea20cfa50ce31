package io.sluice.javaclient;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Collection;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.function.Supplier;

import org.apache.kafka.clients.CommonClientConfigs;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.ConsumerGroupDescription;
import org.apache.kafka.clients.admin.CreateTopicsResult;
import org.apache.kafka.clients.admin.DescribeClusterOptions;
import org.apache.kafka.clients.admin.DescribeConsumerGroupsOptions;
import org.apache.kafka.clients.admin.DescribeTopicsOptions;
import org.apache.kafka.clients.admin.ListConsumerGroupOffsetsSpec;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.admin.ScramCredentialInfo;
import org.apache.kafka.clients.admin.TopicDescription;
import org.apache.kafka.clients.admin.TransactionDescription;
import org.apache.kafka.clients.admin.ScramMechanism;
import org.apache.kafka.clients.admin.UserScramCredentialDeletion;
import org.apache.kafka.clients.admin.UserScramCredentialUpsertion;
import org.apache.kafka.clients.admin.UserScramCredentialsDescription;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.KafkaFuture;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.acl.AccessControlEntry;
import org.apache.kafka.common.acl.AccessControlEntryFilter;
import org.apache.kafka.common.acl.AclBinding;
import org.apache.kafka.common.acl.AclBindingFilter;
import org.apache.kafka.common.acl.AclOperation;
import org.apache.kafka.common.acl.AclPermissionType;
import org.apache.kafka.common.config.SaslConfigs;
import org.apache.kafka.common.config.SslConfigs;
import org.apache.kafka.common.errors.AuthorizationException;
import org.apache.kafka.common.errors.SaslAuthenticationException;
import org.apache.kafka.common.errors.SslAuthenticationException;
import org.apache.kafka.common.errors.TopicAuthorizationException;
import org.apache.kafka.common.quota.ClientQuotaAlteration;
import org.apache.kafka.common.quota.ClientQuotaEntity;
import org.apache.kafka.common.quota.ClientQuotaFilter;
import org.apache.kafka.common.resource.PatternType;
import org.apache.kafka.common.resource.ResourcePattern;
import org.apache.kafka.common.resource.ResourcePatternFilter;
import org.apache.kafka.common.resource.ResourceType;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.RegisterExtension;

/**
 * The Java client with its usual security settings: SASL_SSL with SCRAM and PLAIN, mutual TLS,
 * ACLs enforced by the broker's authorizer, SCRAM credentials and client quotas managed through
 * the Admin API.
 *
 * <p>One broker for the class with three listeners: PLAINTEXT (where readiness is probed; its
 * anonymous principal is a super user, as an operator's local listener would be), SASL_SSL and SSL
 * with client certificates required. {@code admin} (SCRAM-SHA-256) is a super user; {@code alice}
 * (SCRAM-SHA-512) and the client certificate's subject get only the ACLs a test gives them.
 */
class SecurityTest {

    @RegisterExtension
    static final SluiceBrokerExtension SLUICE = new SluiceBrokerExtension();

    private static final String CERTIFICATE_PRINCIPAL = "User:CN=client,OU=eng,O=acme";
    private static final Duration PROPAGATION_TIMEOUT = Duration.ofSeconds(15);
    /** Kafka's supported operations on a topic: a super user's authorized operations. */
    private static final Set<AclOperation> TOPIC_OPERATIONS = Set.of(AclOperation.READ, AclOperation.WRITE,
            AclOperation.CREATE, AclOperation.DESCRIBE, AclOperation.DELETE, AclOperation.ALTER,
            AclOperation.DESCRIBE_CONFIGS, AclOperation.ALTER_CONFIGS);
    /** Kafka's supported operations on the cluster. */
    private static final Set<AclOperation> CLUSTER_OPERATIONS = Set.of(AclOperation.CREATE,
            AclOperation.CLUSTER_ACTION, AclOperation.DESCRIBE_CONFIGS, AclOperation.ALTER_CONFIGS,
            AclOperation.IDEMPOTENT_WRITE, AclOperation.ALTER, AclOperation.DESCRIBE);

    private static TestCertificates certificates;
    private static SluiceBroker broker;

    @BeforeAll
    static void startBroker() throws IOException {
        certificates = TestCertificates.create();
        broker = SLUICE.broker(
                "--listeners", "PLAINTEXT://127.0.0.1:{PORT},SASL_SSL://127.0.0.1:{PORT2},SSL://127.0.0.1:{PORT3}",
                "--ssl-certificate", certificates.brokerCertificate.toString(),
                "--ssl-key", certificates.brokerKey.toString(),
                "--ssl-ca", certificates.caCertificate.toString(),
                "--ssl-client-auth", "required",
                "--sasl-enabled-mechanisms", "PLAIN,SCRAM-SHA-256,SCRAM-SHA-512",
                "--add-scram", "SCRAM-SHA-256=[name=admin,password=admin-secret]",
                "--add-scram", "SCRAM-SHA-512=[name=alice,password=alice-secret]",
                "--authorizer", "on",
                "--super-users", "User:admin;User:ANONYMOUS");
    }

    @AfterAll
    static void deleteCertificates() throws IOException {
        if (certificates != null) {
            try (var paths = java.nio.file.Files.walk(certificates.dir)) {
                paths.sorted(java.util.Comparator.reverseOrder()).forEach(path -> path.toFile().delete());
            }
        }
    }

    // ------------------------------------------------------------------ tests

    @Test
    void scramUserProducesAndConsumesOnlyWithAcls() {
        String topic = Clients.uniqueName("secure");
        String group = Clients.uniqueName("secure-group");
        try (Admin admin = Admin.create(sasl("SCRAM-SHA-256", "admin", "admin-secret"))) {
            Clients.createTopic(admin, topic, 1);

            try (KafkaProducer<String, String> producer = producer(sasl("SCRAM-SHA-512", "alice", "alice-secret"))) {
                Exception refused = assertThrows(Exception.class,
                        () -> producer.send(new ProducerRecord<>(topic, "k", "v")).get(30, TimeUnit.SECONDS));
                assertInstanceOf(AuthorizationException.class, rootCause(refused), () -> "without ACLs: " + refused);
            }

            List<AclBinding> grants = List.of(
                    allow("User:alice", ResourceType.TOPIC, topic, AclOperation.WRITE),
                    allow("User:alice", ResourceType.TOPIC, topic, AclOperation.READ),
                    allow("User:alice", ResourceType.GROUP, group, AclOperation.READ));
            Clients.get(admin.createAcls(grants).all());
            awaitAcls(admin, "User:alice", 3);

            try (KafkaProducer<String, String> producer = producer(sasl("SCRAM-SHA-512", "alice", "alice-secret"))) {
                List<ProducerRecord<String, String>> records = new ArrayList<>();
                for (int i = 0; i < 10; i++) {
                    records.add(new ProducerRecord<>(topic, "k" + i, "v" + i));
                }
                Clients.sendAll(producer, records);
            }
            Map<String, Object> consumerConfig = sasl("SCRAM-SHA-512", "alice", "alice-secret");
            consumerConfig.put(ConsumerConfig.GROUP_ID_CONFIG, group);
            try (KafkaConsumer<String, String> consumer = consumer(consumerConfig)) {
                consumer.subscribe(List.of(topic));
                List<ConsumerRecord<String, String>> received = Clients.consumeExactly(consumer, 10);
                assertEquals("v0", received.get(0).value());
                consumer.commitSync();
            }

            AclBinding deny = new AclBinding(new ResourcePattern(ResourceType.TOPIC, topic.substring(0, 6), PatternType.PREFIXED),
                    new AccessControlEntry("User:alice", "*", AclOperation.READ, AclPermissionType.DENY));
            Clients.get(admin.createAcls(List.of(deny)).all());
            awaitAcls(admin, "User:alice", 4);
            try (KafkaConsumer<String, String> consumer = consumer(sasl("SCRAM-SHA-512", "alice", "alice-secret"))) {
                consumer.assign(List.of(new TopicPartition(topic, 0)));
                consumer.seekToBeginning(List.of(new TopicPartition(topic, 0)));
                assertThrows(TopicAuthorizationException.class, () -> {
                    for (int i = 0; i < 50; i++) {
                        consumer.poll(Duration.ofMillis(200));
                    }
                }, "a DENY overrides the ALLOW");
            }

            AclBindingFilter denies = new AclBindingFilter(ResourcePatternFilter.ANY,
                    new AccessControlEntryFilter("User:alice", null, AclOperation.ANY, AclPermissionType.DENY));
            Collection<AclBinding> deleted = Clients.get(admin.deleteAcls(List.of(denies)).all());
            assertEquals(List.of(deny), List.copyOf(deleted));
            awaitAcls(admin, "User:alice", 3);
            try (KafkaConsumer<String, String> consumer = consumer(sasl("SCRAM-SHA-512", "alice", "alice-secret"))) {
                consumer.assign(List.of(new TopicPartition(topic, 0)));
                consumer.seekToBeginning(List.of(new TopicPartition(topic, 0)));
                assertEquals(10, Clients.pollUntilCount(consumer, 10, Clients.CONSUME_TIMEOUT).size());
            }
        }
    }

    @Test
    void wrongPasswordsAndUnknownUsersAreRefused() {
        for (Map<String, Object> config : List.of(
                sasl("SCRAM-SHA-512", "alice", "not-her-password"),
                sasl("SCRAM-SHA-256", "nobody", "whatever"),
                sasl("PLAIN", "alice", "not-her-password"))) {
            try (Admin admin = Admin.create(config)) {
                ExecutionException failed = assertThrows(ExecutionException.class,
                        () -> admin.describeCluster().nodes().get(30, TimeUnit.SECONDS));
                assertInstanceOf(SaslAuthenticationException.class, failed.getCause(), () -> config + ": " + failed);
            }
        }
        // The refused clients changed nothing for the others.
        try (Admin admin = Admin.create(sasl("PLAIN", "admin", "admin-secret"))) {
            assertEquals(1, Clients.get(admin.describeCluster().nodes()).size());
        }
    }

    @Test
    void untrustedBrokerCertificateIsRefused() {
        Map<String, Object> config = sasl("SCRAM-SHA-256", "admin", "admin-secret");
        config.put(SslConfigs.SSL_TRUSTSTORE_LOCATION_CONFIG, certificates.rogueCaCertificate.toString());
        try (Admin admin = Admin.create(config)) {
            ExecutionException failed = assertThrows(ExecutionException.class,
                    () -> admin.describeCluster().nodes().get(30, TimeUnit.SECONDS));
            assertInstanceOf(SslAuthenticationException.class, failed.getCause(), () -> "rogue trust: " + failed);
        }
    }

    @Test
    void clientCertificateIsThePrincipalOnTheSslListener() {
        String topic = Clients.uniqueName("mtls");
        try (Admin admin = Admin.create(sasl("SCRAM-SHA-256", "admin", "admin-secret"))) {
            Clients.createTopic(admin, topic, 1);
            Clients.get(admin.createAcls(List.of(
                    allow(CERTIFICATE_PRINCIPAL, ResourceType.TOPIC, topic, AclOperation.WRITE),
                    allow(CERTIFICATE_PRINCIPAL, ResourceType.TOPIC, topic, AclOperation.READ))).all());
            awaitAcls(admin, CERTIFICATE_PRINCIPAL, 2);
        }
        try (KafkaProducer<String, String> producer = producer(mutualTls(certificates.clientKeystore.toString()))) {
            Clients.sendAll(producer, List.of(new ProducerRecord<>(topic, "k", "from-certificate")));
        }
        try (KafkaConsumer<String, String> consumer = consumer(mutualTls(certificates.clientKeystore.toString()))) {
            consumer.assign(List.of(new TopicPartition(topic, 0)));
            assertEquals("from-certificate", Clients.consumeExactly(consumer, 1).get(0).value());
        }
        for (String keystore : new String[] {null, certificates.rogueClientKeystore.toString()}) {
            try (Admin admin = Admin.create(mutualTls(keystore))) {
                ExecutionException failed = assertThrows(ExecutionException.class,
                        () -> admin.describeCluster().nodes().get(30, TimeUnit.SECONDS));
                assertInstanceOf(SslAuthenticationException.class, failed.getCause(),
                        () -> "client certificate " + keystore + ": " + failed);
            }
        }
    }

    @Test
    void scramCredentialsAreManagedThroughTheAdminApi() {
        try (Admin admin = Admin.create(sasl("SCRAM-SHA-256", "admin", "admin-secret"))) {
            Clients.get(admin.alterUserScramCredentials(List.of(new UserScramCredentialUpsertion("bob",
                    new ScramCredentialInfo(ScramMechanism.SCRAM_SHA_256, 8192), "bob-secret"))).all());
            Map<String, UserScramCredentialsDescription> described =
                    Clients.get(admin.describeUserScramCredentials(List.of("bob")).all());
            assertEquals(List.of(new ScramCredentialInfo(ScramMechanism.SCRAM_SHA_256, 8192)),
                    described.get("bob").credentialInfos());
            assertTrue(Clients.get(admin.describeUserScramCredentials().all()).keySet().containsAll(
                    List.of("admin", "alice", "bob")));

            awaitTrue("bob can authenticate", () -> authenticates(sasl("SCRAM-SHA-256", "bob", "bob-secret")));

            Clients.get(admin.alterUserScramCredentials(List.of(
                    new UserScramCredentialDeletion("bob", ScramMechanism.SCRAM_SHA_256))).all());
            awaitTrue("bob can no longer authenticate",
                    () -> !authenticates(sasl("SCRAM-SHA-256", "bob", "bob-secret")));
        }
    }

    @Test
    void clientQuotasAreSetAndDescribedThroughTheAdminApi() {
        ClientQuotaEntity alice = new ClientQuotaEntity(Map.of(ClientQuotaEntity.USER, "alice"));
        Map<String, String> defaultClient = new HashMap<>();
        defaultClient.put(ClientQuotaEntity.CLIENT_ID, null);
        ClientQuotaEntity anyClient = new ClientQuotaEntity(defaultClient);
        try (Admin admin = Admin.create(sasl("SCRAM-SHA-256", "admin", "admin-secret"))) {
            Clients.get(admin.alterClientQuotas(List.of(
                    new ClientQuotaAlteration(alice, List.of(
                            new ClientQuotaAlteration.Op("producer_byte_rate", 1_048_576.0),
                            new ClientQuotaAlteration.Op("consumer_byte_rate", 2_097_152.0))),
                    new ClientQuotaAlteration(anyClient, List.of(
                            new ClientQuotaAlteration.Op("request_percentage", 200.0))))).all());
            awaitTrue("both entities described", () -> {
                Map<ClientQuotaEntity, Map<String, Double>> quotas =
                        Clients.get(admin.describeClientQuotas(ClientQuotaFilter.all()).entities());
                return Map.of("producer_byte_rate", 1_048_576.0, "consumer_byte_rate", 2_097_152.0)
                                .equals(quotas.get(alice))
                        && Map.of("request_percentage", 200.0).equals(quotas.get(anyClient));
            });
            Clients.get(admin.alterClientQuotas(List.of(new ClientQuotaAlteration(alice, List.of(
                    new ClientQuotaAlteration.Op("producer_byte_rate", null))))).all());
            awaitTrue("one quota removed", () -> Map.of("consumer_byte_rate", 2_097_152.0).equals(
                    Clients.get(admin.describeClientQuotas(ClientQuotaFilter.all()).entities()).get(alice)));
        }
    }

    /**
     * Authorized operations as Kafka answers them: every supported operation for a super user,
     * the allowed ones (with implied DESCRIBE and DESCRIBE_CONFIGS) for {@code carol}; offsets of a
     * topic she may not describe are not given; a topic she may create but not describe the
     * configs of is created without its configs.
     */
    @Test
    void authorizedOperationsFollowTheAcls() {
        String readable = Clients.uniqueName("ops-readable");
        String hidden = Clients.uniqueName("ops-hidden");
        String created = Clients.uniqueName("ops-created");
        String group = Clients.uniqueName("ops-group");
        String transactionalId = Clients.uniqueName("ops-transaction");
        try (Admin admin = Admin.create(sasl("SCRAM-SHA-256", "admin", "admin-secret"))) {
            Clients.get(admin.alterUserScramCredentials(List.of(new UserScramCredentialUpsertion("carol",
                    new ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, 4096), "carol-secret"))).all());
            Clients.createTopic(admin, readable, 1);
            Clients.createTopic(admin, hidden, 1);
            Map<TopicPartition, OffsetAndMetadata> committed = Map.of(
                    new TopicPartition(readable, 0), new OffsetAndMetadata(0),
                    new TopicPartition(hidden, 0), new OffsetAndMetadata(0));
            Clients.get(admin.alterConsumerGroupOffsets(group, committed).all());
            openTransaction(transactionalId, readable, hidden);

            TopicDescription asSuperUser = Clients.get(admin.describeTopics(List.of(readable),
                    new DescribeTopicsOptions().includeAuthorizedOperations(true)).allTopicNames()).get(readable);
            assertEquals(TOPIC_OPERATIONS, asSuperUser.authorizedOperations());
            assertEquals(CLUSTER_OPERATIONS, Clients.get(admin.describeCluster(
                    new DescribeClusterOptions().includeAuthorizedOperations(true)).authorizedOperations()));
            assertEquals(null, Clients.get(admin.describeCluster().authorizedOperations()), "not asked for");

            List<AclBinding> grants = List.of(
                    allow("User:carol", ResourceType.TOPIC, readable, AclOperation.READ),
                    allow("User:carol", ResourceType.TOPIC, created, AclOperation.CREATE),
                    allow("User:carol", ResourceType.CLUSTER, "kafka-cluster", AclOperation.DESCRIBE),
                    allow("User:carol", ResourceType.CLUSTER, "kafka-cluster", AclOperation.ALTER_CONFIGS),
                    allow("User:carol", ResourceType.GROUP, group, AclOperation.READ),
                    allow("User:carol", ResourceType.TRANSACTIONAL_ID, transactionalId, AclOperation.DESCRIBE));
            Clients.get(admin.createAcls(grants).all());
            awaitAcls(admin, "User:carol", grants.size());
            awaitTrue("carol can authenticate", () -> authenticates(sasl("SCRAM-SHA-512", "carol", "carol-secret")));
        }
        try (Admin carol = Admin.create(sasl("SCRAM-SHA-512", "carol", "carol-secret"))) {
            TopicDescription topic = Clients.get(carol.describeTopics(List.of(readable),
                    new DescribeTopicsOptions().includeAuthorizedOperations(true)).allTopicNames()).get(readable);
            assertEquals(Set.of(AclOperation.READ, AclOperation.DESCRIBE), topic.authorizedOperations());
            assertEquals(Set.of(AclOperation.DESCRIBE, AclOperation.ALTER_CONFIGS, AclOperation.DESCRIBE_CONFIGS),
                    Clients.get(carol.describeCluster(new DescribeClusterOptions().includeAuthorizedOperations(true))
                            .authorizedOperations()));
            ConsumerGroupDescription described = Clients.get(carol.describeConsumerGroups(List.of(group),
                    new DescribeConsumerGroupsOptions().includeAuthorizedOperations(true)).all()).get(group);
            assertEquals(Set.of(AclOperation.READ, AclOperation.DESCRIBE), described.authorizedOperations());

            ListConsumerGroupOffsetsSpec spec = new ListConsumerGroupOffsetsSpec().topicPartitions(
                    List.of(new TopicPartition(readable, 0), new TopicPartition(hidden, 0)));
            Map<TopicPartition, OffsetAndMetadata> offsets = Clients.get(
                    carol.listConsumerGroupOffsets(Map.of(group, spec)).partitionsToOffsetAndMetadata(group));
            assertEquals(new OffsetAndMetadata(0), offsets.get(new TopicPartition(readable, 0)));
            assertEquals(null, offsets.get(new TopicPartition(hidden, 0)), "no offset of a topic carol may not describe");

            TransactionDescription transaction =
                    Clients.get(carol.describeTransactions(List.of(transactionalId)).description(transactionalId));
            assertEquals(Set.of(new TopicPartition(readable, 0)), transaction.topicPartitions(),
                    "a transaction's topics carol may not describe are left out");

            CreateTopicsResult creation = carol.createTopics(List.of(new NewTopic(created, 1, (short) 1)));
            Clients.get(creation.all());
            ExecutionException hiddenConfigs = assertThrows(ExecutionException.class,
                    () -> creation.numPartitions(created).get(30, TimeUnit.SECONDS));
            assertInstanceOf(TopicAuthorizationException.class, hiddenConfigs.getCause(),
                    "no DESCRIBE_CONFIGS: the configs are not given");
        }
    }

    // ------------------------------------------------------------------ helpers

    /** Begins a transaction as {@code admin} that writes to each topic, and leaves it open. */
    private static void openTransaction(String transactionalId, String... topics) {
        Map<String, Object> config = sasl("SCRAM-SHA-256", "admin", "admin-secret");
        config.put(ProducerConfig.TRANSACTIONAL_ID_CONFIG, transactionalId);
        config.put(ProducerConfig.TRANSACTION_TIMEOUT_CONFIG, 120_000);
        KafkaProducer<String, String> producer = producer(config);
        producer.initTransactions();
        producer.beginTransaction();
        for (String topic : topics) {
            Clients.get(producer.send(new ProducerRecord<>(topic, "k", "v")));
        }
        producer.flush();
        // Closed without committing: the transaction stays open until it times out.
        producer.close(Duration.ZERO);
    }

    /** Client settings for the SASL_SSL listener with this mechanism and user. */
    private static Map<String, Object> sasl(String mechanism, String user, String password) {
        Map<String, Object> config = new HashMap<>();
        config.put(CommonClientConfigs.BOOTSTRAP_SERVERS_CONFIG, "127.0.0.1:" + broker.extraPort(2));
        config.put(CommonClientConfigs.CLIENT_ID_CONFIG, Clients.uniqueName("secure-client"));
        config.put(CommonClientConfigs.SECURITY_PROTOCOL_CONFIG, "SASL_SSL");
        config.put(SaslConfigs.SASL_MECHANISM, mechanism);
        String module = mechanism.equals("PLAIN")
                ? "org.apache.kafka.common.security.plain.PlainLoginModule"
                : "org.apache.kafka.common.security.scram.ScramLoginModule";
        config.put(SaslConfigs.SASL_JAAS_CONFIG,
                module + " required username=\"" + user + "\" password=\"" + password + "\";");
        trustTestAuthority(config);
        return config;
    }

    /** Client settings for the SSL listener, presenting the key store's certificate (or none). */
    private static Map<String, Object> mutualTls(String keystore) {
        Map<String, Object> config = new HashMap<>();
        config.put(CommonClientConfigs.BOOTSTRAP_SERVERS_CONFIG, "127.0.0.1:" + broker.extraPort(3));
        config.put(CommonClientConfigs.CLIENT_ID_CONFIG, Clients.uniqueName("mtls-client"));
        config.put(CommonClientConfigs.SECURITY_PROTOCOL_CONFIG, "SSL");
        trustTestAuthority(config);
        if (keystore != null) {
            config.put(SslConfigs.SSL_KEYSTORE_TYPE_CONFIG, "PEM");
            config.put(SslConfigs.SSL_KEYSTORE_LOCATION_CONFIG, keystore);
        }
        return config;
    }

    private static void trustTestAuthority(Map<String, Object> config) {
        config.put(SslConfigs.SSL_TRUSTSTORE_TYPE_CONFIG, "PEM");
        config.put(SslConfigs.SSL_TRUSTSTORE_LOCATION_CONFIG, certificates.caCertificate.toString());
        config.put(AdminClientConfig.REQUEST_TIMEOUT_MS_CONFIG, 10_000);
        config.put(AdminClientConfig.DEFAULT_API_TIMEOUT_MS_CONFIG, 20_000);
    }

    private static KafkaProducer<String, String> producer(Map<String, Object> config) {
        config.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, config.remove(CommonClientConfigs.BOOTSTRAP_SERVERS_CONFIG));
        config.put(ProducerConfig.MAX_BLOCK_MS_CONFIG, 20_000);
        config.put(ProducerConfig.DELIVERY_TIMEOUT_MS_CONFIG, 30_000);
        config.remove(AdminClientConfig.DEFAULT_API_TIMEOUT_MS_CONFIG);
        return Clients.producer(broker, config);
    }

    private static KafkaConsumer<String, String> consumer(Map<String, Object> config) {
        config.remove(AdminClientConfig.DEFAULT_API_TIMEOUT_MS_CONFIG);
        return Clients.consumer(broker, config);
    }

    private static AclBinding allow(String principal, ResourceType type, String name, AclOperation operation) {
        return new AclBinding(new ResourcePattern(type, name, PatternType.LITERAL),
                new AccessControlEntry(principal, "*", operation, AclPermissionType.ALLOW));
    }

    /** Waits until the principal has exactly {@code count} ACLs (Kafka applies them asynchronously). */
    private static void awaitAcls(Admin admin, String principal, int count) {
        AclBindingFilter filter = new AclBindingFilter(ResourcePatternFilter.ANY,
                new AccessControlEntryFilter(principal, null, AclOperation.ANY, AclPermissionType.ANY));
        awaitTrue(principal + " has " + count + " ACLs",
                () -> Clients.get(admin.describeAcls(filter).values()).size() == count);
    }

    private static boolean authenticates(Map<String, Object> config) {
        try (Admin admin = Admin.create(config)) {
            KafkaFuture<?> nodes = admin.describeCluster().nodes();
            nodes.get(30, TimeUnit.SECONDS);
            return true;
        } catch (ExecutionException e) {
            if (e.getCause() instanceof SaslAuthenticationException) {
                return false;
            }
            throw new AssertionError("neither authenticated nor refused", e);
        } catch (Exception e) {
            throw new AssertionError(e);
        }
    }

    private static void awaitTrue(String what, Supplier<Boolean> condition) {
        long deadline = System.nanoTime() + PROPAGATION_TIMEOUT.toNanos();
        for (int attempt = 0; attempt < 100; attempt++) {
            if (condition.get()) {
                return;
            }
            if (System.nanoTime() > deadline) {
                break;
            }
            try {
                Thread.sleep(200);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                throw new AssertionError("interrupted", e);
            }
        }
        throw new AssertionError("not within " + PROPAGATION_TIMEOUT.toSeconds() + " s: " + what);
    }

    private static Throwable rootCause(Throwable error) {
        Throwable cause = error;
        while (cause.getCause() != null && cause.getCause() != cause) {
            cause = cause.getCause();
        }
        return cause;
    }
}
