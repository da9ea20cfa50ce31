"""sluicectl over TLS and SASL: the client security settings of Kafka's tools.

Goal: an operator whose cluster has only secured listeners drives it with `sluicectl` exactly
as with Kafka's CLI tools: a `--command-config` properties file with Kafka's client property
names (`security.protocol`, a PEM trust store, `sasl.mechanism`, a ScramLoginModule
`sasl.jaas.config` split over continuation lines), or the equivalent flags and `SLUICECTL_*`
variables; every connection the tool opens (bootstrap, partition leaders, group coordinators)
is encrypted and authenticated; a wrong password, an untrusted CA or a missing client
certificate fails with a non-zero exit and one `sluicectl: error:` line, no backtrace, and no
password anywhere in the output.

Method: one broker for the module with three listeners, SASL_SSL (SCRAM and PLAIN, the admin
user from `--add-scram`), SSL with required client certificates and SASL_PLAINTEXT, the authorizer on and two
super users: `User:admin` (SCRAM) and `User:CN=ops` (the certificate's subject, Kafka's
default mapping). Certificates come from `openssl` in the test's temp dir (test_tls.Pki). Each
test runs the real `sluicectl` binary; every command is bounded by a subprocess timeout.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from cluster import sluicectl_binary
from conftest import HOST, Broker, free_ports
from test_tls import Pki, ssl_context, tls_flags

pytestmark = pytest.mark.sluice_only("sluice's --listeners, SASL and authorizer flags")

ADMIN, ADMIN_PASSWORD = "admin", "admin-secret-4d7a"
ALICE, ALICE_PASSWORD = "alice", "alice-secret-81be"
WRONG_PASSWORD = "wrong-password-c09e"
COMMAND_TIMEOUT_S = 60


class Secured:
    """The module's broker and the files a client needs."""

    def __init__(self, workdir: Path):
        self.workdir = workdir
        self.pki = Pki(workdir / "pki", "trusted")
        self.untrusted = Pki(workdir / "untrusted", "untrusted")
        cert, key = self.pki.issue("broker", "/CN=localhost", server=True)
        self.ops = self.pki.issue("ops", "/CN=ops", server=False)
        self.stranger = self.untrusted.issue("stranger", "/CN=ops", server=False)
        self.broker = Broker(workdir, "secured")
        self.ssl_port, self.sasl_plaintext_port = free_ports(2)
        self.broker.listeners = (f"SASL_SSL://{HOST}:{self.broker.port},SSL://{HOST}:{self.ssl_port},"
                                 f"SASL_PLAINTEXT://{HOST}:{self.sasl_plaintext_port}")
        users = workdir / "users.toml"
        users.write_text("add_scram = [\n"
                         f'  "SCRAM-SHA-256=[name={ADMIN},password={ADMIN_PASSWORD}]",\n'
                         f'  "SCRAM-SHA-512=[name={ADMIN},password={ADMIN_PASSWORD}]",\n'
                         "]\n")
        self.broker.extra_args += [
            "--config", str(users), *tls_flags(self.pki, cert, key, "required"),
            "--sasl-enabled-mechanisms", "PLAIN,SCRAM-SHA-256,SCRAM-SHA-512",
            "--authorizer", "on", "--super-users", "User:admin;User:CN=ops",
        ]
        self.broker.ready_tls = ssl_context(self.pki)

    @property
    def sasl_bootstrap(self) -> str:
        return f"{HOST}:{self.broker.port}"

    @property
    def ssl_bootstrap(self) -> str:
        return f"{HOST}:{self.ssl_port}"

    def command_config(self, name: str, mechanism: str, user: str, password: str, ca: Path | None = None) -> Path:
        """A Kafka client properties file for the SASL_SSL listener, as Kafka's docs write one."""
        path = self.workdir / f"{name}.properties"
        path.write_text(
            "# client settings for the SASL_SSL listener\n"
            "security.protocol=SASL_SSL\n"
            f"ssl.truststore.location={ca or self.pki.ca}\n"
            "ssl.truststore.type=PEM\n"
            f"sasl.mechanism={mechanism}\n"
            "sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required \\\n"
            f'    username="{user}" \\\n'
            f'    password="{password}";\n')
        return path


@pytest.fixture(scope="module")
def secured(tmp_path_factory):
    secured = Secured(tmp_path_factory.mktemp("sluicectl-security"))
    secured.broker.start()
    yield secured
    secured.broker.stop()


def sluicectl(bootstrap: str, *args: str, env: dict[str, str] | None = None,
              stdin: str | None = None) -> subprocess.CompletedProcess:
    clean = {key: value for key, value in os.environ.items() if not key.startswith(("SLUICECTL_", "SLUICE_"))}
    return subprocess.run([sluicectl_binary(), "--bootstrap-server", bootstrap, *args], input=stdin,
                          capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S, env={**clean, **(env or {})})


def ok(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 0, f"exit {proc.returncode}\nstdout: {proc.stdout}\nstderr: {proc.stderr}"
    return proc.stdout


def assert_clean_failure(proc: subprocess.CompletedProcess, *expected: str, secret: str | None = None) -> str:
    """A non-zero exit with one error line naming `expected`, no backtrace, no `secret`."""
    assert proc.returncode != 0, f"should fail; stdout: {proc.stdout}"
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("sluicectl: error:"), proc.stderr
    assert "panicked" not in proc.stderr and "backtrace" not in proc.stderr, proc.stderr
    for text in expected:
        assert text in proc.stderr, f"{text!r} not in {proc.stderr!r}"
    if secret is not None:
        assert secret not in proc.stderr and secret not in proc.stdout, "the password was printed"
    return lines[0]


def test_scram_command_config_manages_topics_records_groups_acls_and_users(secured):
    config = secured.command_config("admin-512", "SCRAM-SHA-512", ADMIN, ADMIN_PASSWORD)
    run = lambda *args, **kwargs: ok(sluicectl(secured.sasl_bootstrap, "--command-config", str(config), *args,
                                               **kwargs))
    run("topics", "create", "payments", "--partitions", "2")
    assert "payments" in run("topics", "list")
    # Produce and consume reach the partitions' leader through its advertised SASL_SSL address;
    # the group's offsets go through the coordinator's connection.
    run("produce", "payments", "--partition", "0", stdin="one\ntwo\nthree\n")
    consumed = run("consume", "payments", "--group", "audit", "--from-beginning", "--max-messages", "3")
    assert consumed.split() == ["one", "two", "three"], consumed
    assert "audit" in run("groups", "list")
    assert "payments" in run("groups", "describe", "audit")
    run("acls", "create", "--topic", "payments", "--principal", f"User:{ALICE}", "--operation", "read")
    assert f"User:{ALICE}" in run("acls", "list", "--topic", "payments")
    run("users", "set", ALICE, "--mechanism", "SCRAM-SHA-256", env={"SLUICE_USER_PASSWORD": ALICE_PASSWORD})
    assert ALICE in run("users", "list")


def test_flags_and_variables_authenticate_with_plain_and_the_authorizer_sees_the_user(secured):
    ok(sluicectl(secured.sasl_bootstrap, "--command-config",
                 str(secured.command_config("admin-256", "SCRAM-SHA-256", ADMIN, ADMIN_PASSWORD)),
                 "users", "set", ALICE, "--mechanism", "SCRAM-SHA-256", env={"SLUICE_USER_PASSWORD": ALICE_PASSWORD}))
    env = {"SLUICECTL_SECURITY_PROTOCOL": "SASL_SSL", "SLUICECTL_SSL_CA": str(secured.pki.ca),
           "SLUICECTL_SASL_PASSWORD": ALICE_PASSWORD}
    # PLAIN checks the password against the stored SCRAM credential; alice is no super user.
    listed = sluicectl(secured.sasl_bootstrap, "--sasl-mechanism", "PLAIN", "--sasl-username", ALICE,
                       "topics", "list", env=env)
    ok(listed)
    refused = sluicectl(secured.sasl_bootstrap, "--sasl-mechanism", "SCRAM-SHA-256", "--sasl-username", ALICE,
                        "topics", "create", "alice-topic", env=env)
    assert_clean_failure(refused, "TopicAuthorizationFailed", secret=ALICE_PASSWORD)


def test_mutual_tls_on_the_ssl_listener_authenticates_by_certificate(secured):
    cert, key = secured.ops
    flags = ["--security-protocol", "SSL", "--ssl-ca", str(secured.pki.ca),
             "--ssl-certificate", str(cert), "--ssl-key", str(key)]
    ok(sluicectl(secured.ssl_bootstrap, *flags, "topics", "create", "ops-topic", "--partitions", "1"))
    assert "ops-topic" in ok(sluicectl(secured.ssl_bootstrap, *flags, "topics", "list"))
    assert "ops-topic" in ok(sluicectl(secured.ssl_bootstrap, *flags, "topics", "describe", "ops-topic"))


def test_sasl_plaintext_with_librdkafka_style_credentials(secured):
    config = secured.workdir / "sasl-plaintext.properties"
    config.write_text("security.protocol=SASL_PLAINTEXT\nsasl.mechanism=SCRAM-SHA-256\n"
                      f"sasl.username={ADMIN}\nsasl.password={ADMIN_PASSWORD}\n")
    bootstrap = f"{HOST}:{secured.sasl_plaintext_port}"
    ok(sluicectl(bootstrap, "--command-config", str(config), "topics", "create", "plain-topic"))
    assert "plain-topic" in ok(sluicectl(bootstrap, "--command-config", str(config), "topics", "list"))


def test_a_wrong_password_fails_cleanly(secured):
    for mechanism in ["SCRAM-SHA-512", "PLAIN"]:
        config = secured.command_config(f"wrong-{mechanism}", mechanism, ADMIN, WRONG_PASSWORD)
        proc = sluicectl(secured.sasl_bootstrap, "--command-config", str(config), "topics", "list")
        assert_clean_failure(proc, "authentication to", secured.sasl_bootstrap, secret=WRONG_PASSWORD)


def test_an_untrusted_ca_or_a_missing_client_certificate_fails_cleanly(secured):
    config = secured.command_config("untrusted", "SCRAM-SHA-512", ADMIN, ADMIN_PASSWORD, ca=secured.untrusted.ca)
    proc = sluicectl(secured.sasl_bootstrap, "--command-config", str(config), "topics", "list")
    assert_clean_failure(proc, "TLS handshake", "UnknownIssuer", secret=ADMIN_PASSWORD)
    # The SSL listener requires a certificate its CA signed: none, or one from another CA, fails.
    for client in [[], ["--ssl-certificate", str(secured.stranger[0]), "--ssl-key", str(secured.stranger[1])]]:
        proc = sluicectl(secured.ssl_bootstrap, "--security-protocol", "SSL", "--ssl-ca", str(secured.pki.ca),
                         *client, "topics", "list")
        assert_clean_failure(proc, "TLS handshake", secured.ssl_bootstrap)


def test_plaintext_settings_against_a_secured_listener_fail_cleanly(secured):
    proc = sluicectl(secured.sasl_bootstrap, "--request-timeout-ms", "5000", "topics", "list")
    assert_clean_failure(proc, secured.sasl_bootstrap, "security.protocol")
    missing = sluicectl(secured.sasl_bootstrap, "--security-protocol", "SASL_SSL", "--ssl-ca", str(secured.pki.ca),
                        "topics", "list")
    assert_clean_failure(missing, "sasl.mechanism")
