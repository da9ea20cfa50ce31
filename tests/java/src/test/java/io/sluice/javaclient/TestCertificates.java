package io.sluice.javaclient;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;

/**
 * A throw-away certificate authority and the certificates the security tests need, made with the
 * {@code openssl} command in a temporary directory: a broker certificate for 127.0.0.1, a client
 * certificate, and a second, untrusted authority with a client certificate of its own.
 *
 * <p>Every certificate is X.509 v3 (signed with extensions), as certificates are in practice;
 * Sluice's TLS library refuses v1 certificates, which openssl makes when given no extensions.
 *
 * <p>Keys are unencrypted PKCS#8 PEM, which both Sluice and Kafka's PEM key stores read. A
 * {@code *.keystore.pem} file holds a key followed by its certificate, the layout of Kafka's
 * {@code ssl.keystore.type=PEM} files.
 */
public final class TestCertificates {

    /** The subject of the trusted client certificate, in the order openssl's -subj takes it. */
    public static final String CLIENT_SUBJECT = "/O=acme/OU=eng/CN=client";

    public final Path dir;
    public final Path caCertificate;
    public final Path brokerCertificate;
    public final Path brokerKey;
    /** The client's key and certificate in one file (Kafka's PEM key store). */
    public final Path clientKeystore;
    public final Path rogueCaCertificate;
    public final Path rogueClientKeystore;

    private TestCertificates(Path dir) {
        this.dir = dir;
        this.caCertificate = dir.resolve("ca.pem");
        this.brokerCertificate = dir.resolve("broker.pem");
        this.brokerKey = dir.resolve("broker.key");
        this.clientKeystore = dir.resolve("client.keystore.pem");
        this.rogueCaCertificate = dir.resolve("rogue-ca.pem");
        this.rogueClientKeystore = dir.resolve("rogue-client.keystore.pem");
    }

    /** Makes every certificate in a new temporary directory. */
    public static TestCertificates create() throws IOException {
        TestCertificates certificates = new TestCertificates(Files.createTempDirectory("sluice-certs-"));
        certificates.make();
        return certificates;
    }

    private void make() throws IOException {
        authority("ca", "/CN=sluice-test-ca");
        authority("rogue-ca", "/CN=sluice-rogue-ca");
        Path extensions = dir.resolve("broker.ext");
        Files.writeString(extensions, "subjectAltName=IP:127.0.0.1,DNS:localhost\n", StandardCharsets.UTF_8);
        Path clientExtensions = dir.resolve("client.ext");
        Files.writeString(clientExtensions, "extendedKeyUsage=clientAuth\n", StandardCharsets.UTF_8);
        leaf("broker", "ca", "/CN=127.0.0.1", extensions);
        leaf("client", "ca", CLIENT_SUBJECT, clientExtensions);
        leaf("rogue-client", "rogue-ca", "/CN=rogue", clientExtensions);
        keystore("client");
        keystore("rogue-client");
    }

    private void authority(String name, String subject) throws IOException {
        openssl("genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", name + ".key");
        openssl("req", "-x509", "-new", "-key", name + ".key", "-out", name + ".pem", "-days", "2",
                "-subj", subject);
    }

    private void leaf(String name, String authority, String subject, Path extensions) throws IOException {
        java.util.Objects.requireNonNull(extensions, "extensions make a v3 certificate");
        openssl("genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", name + ".key");
        openssl("req", "-new", "-key", name + ".key", "-out", name + ".csr", "-subj", subject);
        List<String> sign = new ArrayList<>(List.of("x509", "-req", "-in", name + ".csr", "-CA", authority + ".pem",
                "-CAkey", authority + ".key", "-CAcreateserial", "-out", name + ".pem", "-days", "2"));
        sign.addAll(List.of("-extfile", extensions.toString()));
        openssl(sign.toArray(String[]::new));
    }

    private void keystore(String name) throws IOException {
        String key = Files.readString(dir.resolve(name + ".key"), StandardCharsets.UTF_8);
        String certificate = Files.readString(dir.resolve(name + ".pem"), StandardCharsets.UTF_8);
        Files.writeString(dir.resolve(name + ".keystore.pem"), key + certificate, StandardCharsets.UTF_8);
    }

    private void openssl(String... args) throws IOException {
        List<String> command = new ArrayList<>();
        command.add("openssl");
        command.addAll(List.of(args));
        Process process = new ProcessBuilder(command).directory(dir.toFile()).redirectErrorStream(true).start();
        try {
            if (!process.waitFor(60, TimeUnit.SECONDS)) {
                process.destroyForcibly();
                throw new IOException("openssl " + String.join(" ", args) + " took over 60 s");
            }
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new IOException("interrupted", e);
        }
        String output = new String(process.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
        if (process.exitValue() != 0) {
            throw new IOException("openssl " + String.join(" ", args) + " failed: " + output);
        }
    }
}
