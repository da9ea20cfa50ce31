// franz-go with its usual security settings: SASL_SSL with SCRAM and PLAIN, mutual TLS, and ACLs
// created through kadm and enforced by the broker's authorizer.

package sluicetest

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"
)

// testPKI is a throw-away certificate authority with a broker certificate for 127.0.0.1 and
// client certificates from it and from an untrusted authority.
type testPKI struct {
	dir         string
	caPool      *x509.CertPool
	client      tls.Certificate
	rogueClient tls.Certificate
}

type issued struct {
	cert *x509.Certificate
	der  []byte
	key  *ecdsa.PrivateKey
}

func issue(t *testing.T, template *x509.Certificate, parent *issued) *issued {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, err := rand.Int(rand.Reader, big.NewInt(1<<62))
	if err != nil {
		t.Fatal(err)
	}
	template.SerialNumber = serial
	template.NotBefore = time.Now().Add(-time.Hour)
	template.NotAfter = time.Now().Add(48 * time.Hour)
	parentCert, signer := template, key
	if parent != nil {
		parentCert, signer = parent.cert, parent.key
	}
	der, err := x509.CreateCertificate(rand.Reader, template, parentCert, &key.PublicKey, signer)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &issued{cert: cert, der: der, key: key}
}

func authority(t *testing.T, name string) *issued {
	return issue(t, &x509.Certificate{
		Subject: pkix.Name{CommonName: name}, IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}, nil)
}

func (c *issued) writePEM(t *testing.T, certPath, keyPath string) {
	t.Helper()
	keyDER, err := x509.MarshalPKCS8PrivateKey(c.key)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if keyPath != "" {
		if err := os.WriteFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

func (c *issued) tlsCertificate() tls.Certificate {
	return tls.Certificate{Certificate: [][]byte{c.der}, PrivateKey: c.key, Leaf: c.cert}
}

func newTestPKI(t *testing.T) *testPKI {
	t.Helper()
	dir := t.TempDir()
	ca, rogue := authority(t, "sluice-test-ca"), authority(t, "sluice-rogue-ca")
	broker := issue(t, &x509.Certificate{
		Subject: pkix.Name{CommonName: "127.0.0.1"}, IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		DNSNames: []string{"localhost"}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}, ca)
	clientTemplate := func(name string) *x509.Certificate {
		return &x509.Certificate{
			Subject:  pkix.Name{CommonName: name, OrganizationalUnit: []string{"eng"}, Organization: []string{"acme"}},
			KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		}
	}
	client, rogueClient := issue(t, clientTemplate("go-client"), ca), issue(t, clientTemplate("rogue"), rogue)
	ca.writePEM(t, filepath.Join(dir, "ca.pem"), "")
	broker.writePEM(t, filepath.Join(dir, "broker.pem"), filepath.Join(dir, "broker.key"))
	pool := x509.NewCertPool()
	pool.AddCert(ca.cert)
	return &testPKI{dir: dir, caPool: pool, client: client.tlsCertificate(), rogueClient: rogueClient.tlsCertificate()}
}

func (p *testPKI) brokerArgs() []string {
	return []string{
		"--listeners", "PLAINTEXT://127.0.0.1:{PORT},SASL_SSL://127.0.0.1:{PORT2},SSL://127.0.0.1:{PORT3}",
		"--ssl-certificate", filepath.Join(p.dir, "broker.pem"),
		"--ssl-key", filepath.Join(p.dir, "broker.key"),
		"--ssl-ca", filepath.Join(p.dir, "ca.pem"),
		"--ssl-client-auth", "required",
		"--sasl-enabled-mechanisms", "PLAIN,SCRAM-SHA-256,SCRAM-SHA-512",
		"--add-scram", "SCRAM-SHA-256=[name=admin,password=admin-secret]",
		"--add-scram", "SCRAM-SHA-512=[name=carol,password=carol-secret]",
		"--authorizer", "on",
		"--super-users", "User:admin;User:ANONYMOUS",
	}
}

// saslClient is a client of the SASL_SSL listener.
func saslClient(t *testing.T, b *Broker, p *testPKI, mechanism sasl.Mechanism, opts ...kgo.Opt) *kgo.Client {
	t.Helper()
	all := append([]kgo.Opt{
		kgo.SeedBrokers(b.ExtraAddr(2)), kgo.ClientID("sluice-go-security"),
		kgo.DialTLSConfig(&tls.Config{RootCAs: p.caPool, MinVersion: tls.VersionTLS12}),
		kgo.SASL(mechanism), kgo.RequestRetries(2), kgo.RetryTimeout(10 * time.Second),
	}, opts...)
	cl, err := kgo.NewClient(all...)
	if err != nil {
		t.Fatalf("kgo.NewClient: %v", err)
	}
	t.Cleanup(cl.Close)
	return cl
}

// tlsClient is a client of the SSL listener presenting certs (none when empty).
func tlsClient(t *testing.T, b *Broker, p *testPKI, certs []tls.Certificate, opts ...kgo.Opt) *kgo.Client {
	t.Helper()
	all := append([]kgo.Opt{
		kgo.SeedBrokers(b.ExtraAddr(3)), kgo.ClientID("sluice-go-mtls"),
		kgo.DialTLSConfig(&tls.Config{RootCAs: p.caPool, Certificates: certs, MinVersion: tls.VersionTLS12}),
		kgo.RequestRetries(2), kgo.RetryTimeout(10 * time.Second),
	}, opts...)
	cl, err := kgo.NewClient(all...)
	if err != nil {
		t.Fatalf("kgo.NewClient: %v", err)
	}
	t.Cleanup(cl.Close)
	return cl
}

func scram512(user, password string) sasl.Mechanism {
	return scram.Auth{User: user, Pass: password}.AsSha512Mechanism()
}

func scram256(user, password string) sasl.Mechanism {
	return scram.Auth{User: user, Pass: password}.AsSha256Mechanism()
}

// awaitACLs waits until principal has exactly count ACLs.
func awaitACLs(t *testing.T, adm *kadm.Client, principal string, count int) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		described, err := adm.DescribeACLs(testContext(t, opTimeout), kadm.NewACLs().
			Allow(principal).AllowHosts().Deny(principal).DenyHosts().AnyResource().Operations(kadm.OpAny).ResourcePatternType(kadm.ACLPatternAny))
		if err == nil {
			total := 0
			for _, d := range described {
				total += len(d.Described)
			}
			if total == count {
				return
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("%s does not have %d ACLs within 15 s", principal, count)
}

func isAuthorizationError(err error) bool {
	return errors.Is(err, kerr.TopicAuthorizationFailed) || errors.Is(err, kerr.ClusterAuthorizationFailed) ||
		errors.Is(err, kerr.GroupAuthorizationFailed)
}

func TestSecurity(t *testing.T) {
	pki := newTestPKI(t)
	b := StartBrokerWith(t, pki.brokerArgs()...)
	admin := kadm.NewClient(saslClient(t, b, pki, scram256("admin", "admin-secret")))

	t.Run("SCRAM user needs ACLs", func(t *testing.T) {
		topic := UniqueName(t, "secure")
		CreateTopic(t, admin, topic, 1, nil)

		denied := saslClient(t, b, pki, scram512("carol", "carol-secret"))
		ctx := testContext(t, 30*time.Second)
		err := denied.ProduceSync(ctx, &kgo.Record{Topic: topic, Value: []byte("v")}).FirstErr()
		if !isAuthorizationError(err) {
			t.Fatalf("produce without ACLs: %v, want an authorization error", err)
		}

		acls := kadm.NewACLs().Allow("User:carol").AllowHosts().Topics(topic).
			Operations(kadm.OpWrite, kadm.OpRead).ResourcePatternType(kadm.ACLPatternLiteral)
		results, err := admin.CreateACLs(testContext(t, opTimeout), acls)
		if err != nil {
			t.Fatalf("CreateACLs: %v", err)
		}
		for _, result := range results {
			if result.Err != nil {
				t.Fatalf("CreateACLs: %v (%s)", result.Err, result.ErrMessage)
			}
		}
		awaitACLs(t, admin, "User:carol", 2)

		writer := saslClient(t, b, pki, scram512("carol", "carol-secret"))
		for i := 0; i < 5; i++ {
			if err := writer.ProduceSync(ctx, &kgo.Record{Topic: topic, Value: []byte{byte('a' + i)}}).FirstErr(); err != nil {
				t.Fatalf("produce with ACLs: %v", err)
			}
		}
		reader := saslClient(t, b, pki, scram512("carol", "carol-secret"),
			kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: {0: kgo.NewOffset().AtStart()}}))
		got := 0
		for polls := 0; polls < 50 && got < 5; polls++ {
			fetches := reader.PollFetches(testContext(t, 2*time.Second))
			if err := fetches.Err(); err != nil && !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("fetch with ACLs: %v", err)
			}
			got += fetches.NumRecords()
		}
		if got != 5 {
			t.Fatalf("consumed %d records, want 5", got)
		}
	})

	t.Run("wrong passwords are refused", func(t *testing.T) {
		for name, mechanism := range map[string]sasl.Mechanism{
			"SCRAM-SHA-512": scram512("carol", "wrong"),
			"SCRAM-SHA-256": scram256("nobody", "whatever"),
			"PLAIN":         plain.Auth{User: "carol", Pass: "wrong"}.AsMechanism(),
		} {
			cl := saslClient(t, b, pki, mechanism)
			err := cl.Ping(testContext(t, 30*time.Second))
			if !errors.Is(err, kerr.SaslAuthenticationFailed) {
				t.Errorf("%s with a wrong password: %v, want SASL_AUTHENTICATION_FAILED", name, err)
			}
		}
		plainAdmin := saslClient(t, b, pki, plain.Auth{User: "admin", Pass: "admin-secret"}.AsMechanism())
		if err := plainAdmin.Ping(testContext(t, 30*time.Second)); err != nil {
			t.Fatalf("PLAIN with the right password: %v", err)
		}
	})

	t.Run("client certificate", func(t *testing.T) {
		topic := UniqueName(t, "mtls")
		CreateTopic(t, admin, topic, 1, nil)
		principal := "User:CN=go-client,OU=eng,O=acme"
		acls := kadm.NewACLs().Allow(principal).AllowHosts().Topics(topic).
			Operations(kadm.OpWrite).ResourcePatternType(kadm.ACLPatternLiteral)
		if _, err := admin.CreateACLs(testContext(t, opTimeout), acls); err != nil {
			t.Fatalf("CreateACLs: %v", err)
		}
		awaitACLs(t, admin, principal, 1)
		cl := tlsClient(t, b, pki, []tls.Certificate{pki.client})
		if err := cl.ProduceSync(testContext(t, 30*time.Second), &kgo.Record{Topic: topic, Value: []byte("v")}).FirstErr(); err != nil {
			t.Fatalf("produce as %s: %v", principal, err)
		}
		for name, certs := range map[string][]tls.Certificate{"no certificate": nil, "untrusted certificate": {pki.rogueClient}} {
			refused := tlsClient(t, b, pki, certs)
			if err := refused.Ping(testContext(t, 15*time.Second)); err == nil {
				t.Errorf("%s: the SSL listener answered", name)
			}
		}
	})
}
