package testenv

import (
	"crypto/x509"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestFindBinariesReportsEveryMissingBinary(t *testing.T) {
	dir := t.TempDir()
	_, err := findBinaries(dir, Options{ControllerManager: true})
	if !errors.Is(err, ErrBinaryMissing) {
		t.Fatalf("findBinaries(empty dir) = %v, want ErrBinaryMissing", err)
	}
	for _, name := range []string{etcdBinary, apiserverBinary, controllerManagerBinary, "make tools"} {
		if !strings.Contains(err.Error(), name) {
			t.Errorf("error %q does not mention %q", err, name)
		}
	}
}

func TestFindBinariesIgnoresControllerManagerWhenNotRequested(t *testing.T) {
	dir := t.TempDir()
	for _, name := range []string{etcdBinary, apiserverBinary} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte("#!/bin/sh\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := findBinaries(dir, Options{}); err != nil {
		t.Errorf("without ControllerManager: %v", err)
	}
	if _, err := findBinaries(dir, Options{ControllerManager: true}); !errors.Is(err, ErrBinaryMissing) {
		t.Errorf("with ControllerManager: err = %v, want ErrBinaryMissing", err)
	}
	// Present but not executable counts as missing.
	if err := os.Chmod(filepath.Join(dir, etcdBinary), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := findBinaries(dir, Options{}); !errors.Is(err, ErrBinaryMissing) {
		t.Errorf("non-executable etcd: err = %v, want ErrBinaryMissing", err)
	}
}

func TestToolsBinPrefersEnvironment(t *testing.T) {
	t.Setenv(ToolsBinEnv, "/somewhere/bin")
	if got, err := ToolsBin(); err != nil || got != "/somewhere/bin" {
		t.Errorf("ToolsBin() = %q, %v; want /somewhere/bin", got, err)
	}
	t.Setenv(ToolsBinEnv, "")
	got, err := ToolsBin()
	if err != nil {
		t.Fatal(err)
	}
	root, err := ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(root, "_output", "tools", "bin"); got != want {
		t.Errorf("ToolsBin() = %q, want %q", got, want)
	}
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		t.Errorf("ModuleRoot() = %q has no go.mod: %v", root, err)
	}
}

func TestClientCAIssuesVerifiableIdentity(t *testing.T) {
	ca, err := newClientCA()
	if err != nil {
		t.Fatal(err)
	}
	certPEM, keyPEM, err := ca.issue("system:serviceaccount:ns1:sa", []string{"system:serviceaccounts", "g2"})
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(certPEM)
	if block == nil {
		t.Fatal("certificate is not PEM")
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	// Organizations form one DER SET, whose encoding sorts them.
	orgs := slices.Sorted(slices.Values(cert.Subject.Organization))
	if cert.Subject.CommonName != "system:serviceaccount:ns1:sa" || !slices.Equal(orgs, []string{"g2", "system:serviceaccounts"}) {
		t.Errorf("subject = %v", cert.Subject)
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca.cert)
	if _, err := cert.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Errorf("client certificate does not verify against the CA: %v", err)
	}
	if k, _ := pem.Decode(keyPEM); k == nil || k.Type != "PRIVATE KEY" {
		t.Errorf("key is not a PEM PKCS#8 key: %q", keyPEM)
	}
}

func TestWriteServiceAccountKey(t *testing.T) {
	dir := t.TempDir()
	key, pub := filepath.Join(dir, "sa.key"), filepath.Join(dir, "sa.pub")
	if err := writeServiceAccountKey(key, pub); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(key)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("key mode = %v, want 0600", fi.Mode().Perm())
	}
	b, _ := os.ReadFile(pub)
	block, _ := pem.Decode(b)
	if block == nil {
		t.Fatal("public key is not PEM")
	}
	if _, err := x509.ParsePKIXPublicKey(block.Bytes); err != nil {
		t.Errorf("public key: %v", err)
	}
}

func TestTailFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "log")
	var lines []string
	for i := range 100 {
		lines = append(lines, strings.Repeat("x", i%7)+"line")
	}
	if err := os.WriteFile(path, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	got := strings.Split(tailFile(path, 3, 1<<20), "\n")
	if !slices.Equal(got, lines[97:]) {
		t.Errorf("tailFile(3 lines) = %q, want %q", got, lines[97:])
	}
	if got := tailFile(path, 1000, 10); len(got) > 10 {
		t.Errorf("tailFile(10 bytes) returned %d bytes", len(got))
	}
	if got := tailFile(filepath.Join(t.TempDir(), "missing"), 3, 100); !strings.Contains(got, "unreadable") {
		t.Errorf("missing log: %q", got)
	}
}

func TestFreePortsAreDistinct(t *testing.T) {
	ports, err := freePorts(4)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[int]bool{}
	for _, p := range ports {
		if p <= 0 || seen[p] {
			t.Errorf("ports %v: %d is zero or repeated", ports, p)
		}
		seen[p] = true
	}
}

func TestStartFailsClearlyWithoutBinaries(t *testing.T) {
	t.Setenv(ToolsBinEnv, t.TempDir())
	_, err := Start(t.Context(), Options{})
	if !errors.Is(err, ErrBinaryMissing) || !strings.Contains(err.Error(), ToolsBinEnv) {
		t.Errorf("Start without binaries = %v, want ErrBinaryMissing naming %s", err, ToolsBinEnv)
	}
}

func TestStartFailureClassifiesPortClash(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		log       string
		portInUse bool
	}{
		{"listen tcp 127.0.0.1:4001: bind: address already in use\n", true},
		{"Error: unknown flag: --x\n", false},
	} {
		path := filepath.Join(dir, "log")
		if err := os.WriteFile(path, []byte(tc.log), 0o600); err != nil {
			t.Fatal(err)
		}
		err := startFailure(&process{name: "etcd", logPath: path}, errors.New("etcd: not ready"))
		if got := errors.Is(err, errPortInUse); got != tc.portInUse {
			t.Errorf("log %q: errors.Is(errPortInUse) = %v, want %v", tc.log, got, tc.portInUse)
		}
		if !strings.Contains(err.Error(), strings.TrimSpace(tc.log)) || !strings.Contains(err.Error(), "etcd: not ready") {
			t.Errorf("error %q lacks the cause or the log tail", err)
		}
	}
}
